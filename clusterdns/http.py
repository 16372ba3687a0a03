"""The HTTP listener: ``/health``, ``/ready`` and ``/metrics``.

These are what CoreDNS's *health* (``:8080/health``), *ready* (``:8181/ready``)
and *prometheus* (``:9153/metrics``) plugins serve, on one port.

- ``/health``: 200 ``OK`` while the process runs (the liveness probe).
- ``/ready``: 200 ``OK`` once the server can give complete answers, else 503
  and the reason (the readiness probe).
- ``/metrics``: the Prometheus text format.
- ``/zone``: the zone as JSON (names, records, each Service's endpoints as
  DNS sees them), to loopback clients and those in ``--http-debug-from`` only;
  others get 403.
- Documents the owner adds (``clusterdns dev``'s ``/status``).
- Any other path gets 404, a method other than GET or HEAD 405, and a
  request that is not HTTP/1.x 400.

The server is a small hand-written HTTP/1.1 reader, not aiohttp.  It serves
three fixed GET paths with no bodies, no keep-alive and no routing, so a
framework would bring a new dependency and little else.  Owning the read loop
also makes the limits plain: each connection gets one request and one response,
then is closed.  The head must arrive within ``read_timeout``, each line of it
is at most ``MAX_LINE`` bytes, and there are at most ``MAX_HEADERS`` header
lines.  The client must take the response, and close its side, within
``write_timeout``.  At most ``max_connections`` connections are served at
once.  So a slow or hostile client holds one task for a bounded time.  And
when slow clients fill every slot (slow-loris), a new connection closes the
one that has been reading its head longest, rather than being turned away:
the liveness probe that gets the pod restarted if it fails is a new
connection, and it sends its whole request at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from http import HTTPStatus
from typing import Callable, Final
from urllib.parse import urlsplit

from .acl import allowed
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics

log = logging.getLogger(__name__)

Readiness = Callable[[], tuple[bool, str]]
"""Called on the event loop for each ``/ready`` request.  It must be cheap and
must not block.  It returns ``(True, "")`` when ready, or ``(False, reason)``.
The reason is a short text sent as the 503 body, e.g.
``"waiting for first sync of Pod, EndpointSlice"``."""

Document = Callable[[], tuple[str, str]]
"""Another GET path's body and content type, built on the event loop (``clusterdns dev``'s ``/status``)."""

READ_TIMEOUT: Final = 5.0  # seconds for the whole request head to arrive
WRITE_TIMEOUT: Final = 10.0  # seconds for the client to take the whole response
MAX_CONNECTIONS: Final = 64  # probes and scrapers are few; more are turned away
MAX_LINE: Final = 8192  # bytes in one request or header line
MAX_HEADERS: Final = 100

_TEXT: Final = "text/plain; charset=utf-8"
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
_VERSION: Final = re.compile(r"HTTP/1\.[0-9]")
_METHODS: Final = ("GET", "HEAD")
PATHS: Final = ("/health", "/ready", "/metrics")


class _BadRequest(Exception):
    """The request is not one we can read; the message goes into the 400 body."""


class HttpServer:
    """A running HTTP listener.  Build it with :func:`start_http`."""

    def __init__(
        self,
        metrics: Metrics,
        is_ready: Readiness,
        read_timeout: float,
        write_timeout: float,
        max_connections: int,
        zone_view: Callable[[], dict] | None = None,
        zone_clients: tuple = (),
        paths: frozenset[str] = frozenset(PATHS),
        documents: dict[str, Document] | None = None,
    ) -> None:
        self._paths = paths
        self._zone_view = zone_view
        self._zone_clients = zone_clients
        self._metrics = metrics
        self._is_ready = is_ready
        self._documents = documents or {}
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()  # one per open connection
        self._reading: dict[asyncio.Task, float] = {}  # those still reading their head → when they began
        self._closing = False

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    def rebind(self, is_ready: Readiness, zone_view: Callable[[], dict] | None) -> None:
        """Report another server's readiness and zone from now on (a reload keeps the listener open)."""
        self._is_ready, self._zone_view = is_ready, zone_view

    async def close(self) -> None:
        """Stop listening, drop open connections and wait until their tasks are gone."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self._closing:
                return
            if len(self._tasks) > self._max_connections and not self._close_slowest_reader():
                return  # every slot is busy writing a response: turn this one away
            peer = writer.get_extra_info("peername")
            response = await self._answer(reader, peer[0] if peer else "")
            if response is None:
                return
            async with asyncio.timeout(self._write_timeout):
                writer.write(response)
                writer.write_eof()  # FIN once the response is sent
                # Closing a socket with input still unread makes the kernel send
                # RST, which can destroy the response in flight (a 400 for a
                # header we stopped reading, a 405 for a POST with a body).  So
                # discard input until the client, having read the response,
                # closes its side.
                while await reader.read(65536):
                    pass
        except (OSError, TimeoutError):
            pass  # the client went away, or would not take the response in time
        except asyncio.CancelledError:
            # close() cancels us and waits for us, or a newer connection took
            # our slot while we were still reading our head.  Ending normally
            # matters on Python 3.11: asyncio's streams callback calls
            # task.exception() on a finished handler, which raises for a
            # cancelled one and gets logged as an error.
            pass
        except Exception:
            log.exception("HTTP request handling failed")
        finally:
            self._tasks.discard(task)
            # Every path ends here: the response is out or abandoned.  This
            # drops the connection without waiting on a slow or vanished client.
            writer.transport.abort()

    def _close_slowest_reader(self) -> bool:
        """Drop the connection that has been sending its request head longest (a slow-loris); False if none."""
        if not self._reading:
            return False
        slowest = min(self._reading, key=self._reading.__getitem__)
        del self._reading[slowest]
        slowest.cancel()  # its handler ends normally and closes the connection
        return True

    async def _answer(self, reader: asyncio.StreamReader, client: str = "") -> bytes | None:
        """The response to the request on ``reader``; None to close without one."""
        task = asyncio.current_task()
        assert task is not None  # each connection is handled in its own task
        self._reading[task] = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(self._read_timeout):
                method, path = await _read_request(reader)
        except TimeoutError:
            return None  # the request head did not arrive in time; nothing to answer
        except _BadRequest as e:
            return _response(HTTPStatus.BAD_REQUEST, f"{e}\n")
        finally:
            self._reading.pop(task, None)
        head_only = method == "HEAD"
        if method not in _METHODS:
            return _response(HTTPStatus.METHOD_NOT_ALLOWED, "only GET and HEAD\n", allow=True)
        if path in PATHS and path not in self._paths:
            pass  # another listener serves it (a Corefile's health, ready and prometheus have a port each)
        elif path == "/health":
            return _response(HTTPStatus.OK, "OK", head_only=head_only)
        elif path == "/ready":
            ready, reason = self._readiness()
            if ready:
                return _response(HTTPStatus.OK, "OK", head_only=head_only)
            return _response(HTTPStatus.SERVICE_UNAVAILABLE, f"{reason}\n", head_only=head_only)
        elif path == "/metrics":
            # Rendering takes milliseconds.  In a thread, the event loop keeps
            # answering DNS in between (the metrics tolerate a concurrent read).
            body: str | bytes = await asyncio.to_thread(self._metrics.exposition)
            return _response(HTTPStatus.OK, body, METRICS_CONTENT_TYPE, head_only=head_only)
        if path == "/zone" and self._zone_view is not None:
            if not allowed(client, self._zone_clients):
                return _response(HTTPStatus.FORBIDDEN, "/zone is for loopback clients and --http-debug-from only\n")
            body = json.dumps(self._zone_view(), indent=1, sort_keys=False)
            return _response(HTTPStatus.OK, body + "\n", "application/json", head_only=head_only)
        if path in self._documents:
            body, content_type = self._documents[path]()
            return _response(HTTPStatus.OK, body, content_type, head_only=head_only)
        return _response(HTTPStatus.NOT_FOUND, "404 page not found\n", head_only=head_only)

    def _readiness(self) -> tuple[bool, str]:
        try:
            return self._is_ready()
        except Exception as e:
            log.exception("readiness check failed")
            return False, f"readiness check failed: {e}"


async def start_http(
    host: str,
    port: int,
    metrics: Metrics,
    is_ready: Readiness,
    *,
    read_timeout: float = READ_TIMEOUT,
    write_timeout: float = WRITE_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    zone_view: Callable[[], dict] | None = None,
    zone_clients: tuple = (),
    paths: frozenset[str] = frozenset(PATHS),
    documents: dict[str, Document] | None = None,
) -> HttpServer:
    """Listen for HTTP on ``host``:``port`` and serve health, readiness and metrics.

    ``host`` is an address or name: ``"127.0.0.1"``, ``"::1"`` (brackets are
    tolerated) or ``""`` for every interface.  Port 0 picks a free port, read
    back from :attr:`HttpServer.port`.  ``is_ready`` is described at
    :data:`Readiness`.  ``zone_view`` builds the body of ``/zone``, served to
    clients in ``zone_clients`` (networks) only.  Of ``/health``, ``/ready`` and
    ``/metrics``, only ``paths`` are served; the others get 404.
    """
    server = HttpServer(metrics, is_ready, read_timeout, write_timeout, max_connections, zone_view, zone_clients,
                        paths, documents)
    bind = host.removeprefix("[").removesuffix("]") or None
    # limit: the most a single readline() may buffer, i.e. one request line.
    server._server = await asyncio.start_server(server._serve, bind, port, limit=MAX_LINE)
    return server


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """Read the request head; return its method and path.  Headers are read and checked, then ignored."""
    parts = (await _read_line(reader)).split(" ")
    if len(parts) != 3:
        raise _BadRequest("malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method) or not _VERSION.fullmatch(version):
        raise _BadRequest("malformed request line")
    if target.startswith("/"):
        path = target.partition("?")[0]
    elif target.startswith(("http://", "https://")):  # absolute-form, as sent to proxies
        path = urlsplit(target).path or "/"
    else:
        raise _BadRequest("malformed request target")
    for _ in range(MAX_HEADERS + 1):
        line = await _read_line(reader)
        if not line:
            return method, path
        name, colon, _ = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise _BadRequest("malformed header field")
    raise _BadRequest("too many header fields")


async def _read_line(reader: asyncio.StreamReader) -> str:
    """One line of the head without its line ending ("" for the blank line that ends it)."""
    try:
        raw = await reader.readline()
    except ValueError:  # longer than the reader's limit
        raise _BadRequest("request line or header field too long") from None
    if not raw.endswith(b"\n"):
        raise _BadRequest("incomplete request")
    return raw.rstrip(b"\r\n").decode("latin-1")


def _response(
    status: HTTPStatus,
    body: str | bytes,
    content_type: str = _TEXT,
    *,
    head_only: bool = False,
    allow: bool = False,
) -> bytes:
    """A complete response; HEAD gets the same head with no body."""
    data = body.encode() if isinstance(body, str) else body
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(data)}\r\n"
        + ("Allow: GET, HEAD\r\n" if allow else "")
        + "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + (b"" if head_only else data)
