"""A real clusterdns server for tests: its own event loop in a thread, 127.0.0.1, a free port.

Tests query it with dnspython over real UDP and TCP sockets.  ``stop()`` (or
leaving the ``with`` block) closes every socket and joins the thread, bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

import dns.message
import dns.query
import dns.rdatatype

from clusterdns.app import ClusterDNS
from clusterdns.forward import Forwarder, ForwardSettings
from clusterdns.server import DnsServer
from clusterdns.settings import Settings
from clusterdns.sources.manifests import ManifestSource

START_TIMEOUT = 10.0


class RunningServer:
    def __init__(
        self,
        manifests: list[str | Path] | None = None,
        settings: Settings | None = None,
        watch: bool = False,
        forward: ForwardSettings | None = None,
        clock=None,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
        **server_options: Any,
    ):
        """``server_options`` go to :class:`DnsServer` (``tcp_limits``, ``metrics``, ``drop_low_source_ports``).

        ``forward`` makes it a forwarding server (its Forwarder reports to ``metrics``; ``clock`` for its cache).
        """
        self.settings = settings or Settings()
        self.server_options = server_options
        self.clock = clock
        if forward is not None:
            self.settings = dataclasses.replace(self.settings, recursion=True)
        self.forward = forward
        self.forwarder: Forwarder | None = None
        self.manifests = [str(p) for p in (manifests or [])]
        self.watch = watch
        self.host = "127.0.0.1"
        self.port = 0
        self.dns: ClusterDNS | None = None
        self.source: ManifestSource | None = None
        self._loop = loop_factory()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-dns-server", daemon=True)
        self._server: DnsServer | None = None
        self._stop: asyncio.Event | None = None
        self._watcher: asyncio.Task | None = None

    # -------------------------------------------------------------- lifecycle

    def start(self) -> "RunningServer":
        self._thread.start()
        self.run(self._start()).result(START_TIMEOUT)
        return self

    async def _start(self) -> None:
        self.dns = ClusterDNS.for_manifests(self.settings)
        self.source = ManifestSource(self.manifests, self.dns.sink)
        self.source.load()
        if self.forward is not None:
            extra = {"clock": self.clock} if self.clock else {}
            self.forwarder = Forwarder(self.forward, self.server_options.get("metrics"), **extra)
        self._server = DnsServer(self.dns.responder, forwarder=self.forwarder, **self.server_options)
        _, self.port = await self._server.listen(self.host, 0)
        self._stop = asyncio.Event()
        if self.watch:
            self._watcher = asyncio.create_task(self.source.watch(self._stop, debounce_ms=50))

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.run(self._shutdown()).result(START_TIMEOUT)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT)
            self._loop.close()

    async def _shutdown(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            await asyncio.wait_for(self._watcher, START_TIMEOUT)
        await self._server.close()
        if self.forwarder is not None:
            await self.forwarder.close()

    def __enter__(self) -> "RunningServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -------------------------------------------------------------- helpers

    def run(self, coro) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the server's loop thread (where zone updates happen) and return its result."""

        async def wrapper():
            return fn(*args)

        return self.run(wrapper()).result(START_TIMEOUT)

    def query(self, name: str, rdtype: str = "A", tcp: bool = False, **make_kwargs: Any) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, **make_kwargs)
        return self.send(q, tcp=tcp)

    @property
    def server(self) -> DnsServer:
        return self._server

    def send(self, q: dns.message.Message, tcp: bool = False) -> dns.message.Message:
        if tcp:
            return dns.query.tcp(q, self.host, port=self.port, timeout=3)
        return dns.query.udp(q, self.host, port=self.port, timeout=3, ignore_trailing=False)

    def send_raw(self, payload: bytes, timeout: float = 1.0) -> bytes | None:
        """One raw UDP datagram; the raw reply, or None if the server dropped it."""
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(payload, (self.host, self.port))
            try:
                return s.recv(65535)
            except TimeoutError:
                return None


def answers(response: dns.message.Message, rdtype: str | None = None) -> list[str]:
    """Answer-section rdata as text, sorted; only ``rdtype`` if given."""
    out = []
    for rrset in response.answer:
        if rdtype is None or rrset.rdtype == dns.rdatatype.from_text(rdtype):
            out += [rd.to_text() for rd in rrset]
    return sorted(out)


async def ask(serving, name: str, qtype: str = "A", tcp: bool = False) -> dns.message.Message:
    """One query over UDP (or TCP) to the first listener of a running :class:`~clusterdns.serving.Serving`."""
    import dns.asyncquery

    host, port = serving.dns_server.addresses[0]
    query = dns.message.make_query(name, qtype)
    if tcp:
        return await dns.asyncquery.tcp(query, host, port=port, timeout=2)
    return await dns.asyncquery.udp(query, host, port=port, timeout=2)
