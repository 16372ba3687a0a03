"""One list+watch loop: a thread that keeps one kind (cluster-wide, or in one namespace) in sync.

The loop follows the Kubernetes reflector protocol:

1. **List** in pages (``limit``/``continue``) and hand the result to the store
   as one replacement of this stream's share of the kind.
2. **Watch** from the list's ``resourceVersion`` with ``allowWatchBookmarks``,
   remembering the resourceVersion of every event and bookmark.
3. When the watch ends (server timeout, dropped connection, stall, error),
   **resume** from the remembered resourceVersion: no relist.
4. Only when the server says that resourceVersion is gone (410, as an HTTP
   status or as an ``ERROR`` event) go back to 1.

It reads raw JSON rather than the client's models: deserialising every Service
into generated classes is slow, and we keep only the DNS fields anyway
(:func:`clusterdns.objects.read_object`).  The requests go through the official
client's ``ApiClient`` (credentials, TLS, the connection pool) without the
generated API classes (see :mod:`.kube_client`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

import urllib3

from . import kube_client as client
from .watch_options import UNREACHABLE, WatchOptions
from ..objects import (
    ENDPOINT_SLICE,
    ENDPOINTS,
    NAMESPACE,
    NODE,
    POD,
    SERVICE,
    Key,
    KubeObject,
    ObjectError,
    read_object,
)

log = logging.getLogger("clusterdns.sources.kube")

THREAD_PREFIX = "clusterdns-kube"

# Pods that have finished can never be DNS targets; leaving them out is most of
# the pod memory on a busy cluster (CoreDNS filters the same way).
POD_FIELD_SELECTOR = "status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown"


# --------------------------------------------------------------------------- what we watch


@dataclass(frozen=True)
class Resource:
    """An API resource (version v1) and where it is listed and watched."""

    kind: str
    plural: str  # as RBAC names it, and in the URL
    group: str  # "" for the core group
    namespaced: bool

    @property
    def rbac_name(self) -> str:
        """``endpointslices.discovery.k8s.io``: how kubectl and RBAC errors name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None) -> str:
        """The collection's URL path: in ``namespace``, or across every namespace (or the cluster) for None."""
        prefix = f"/apis/{self.group}/v1" if self.group else "/api/v1"
        if namespace is not None and self.namespaced:
            return f"{prefix}/namespaces/{namespace}/{self.plural}"
        return f"{prefix}/{self.plural}"


RESOURCES: dict[str, Resource] = {
    r.kind: r
    for r in (
        Resource(NAMESPACE, "namespaces", "", namespaced=False),
        Resource(SERVICE, "services", "", namespaced=True),
        Resource(ENDPOINT_SLICE, "endpointslices", "discovery.k8s.io", namespaced=True),
        Resource(ENDPOINTS, "endpoints", "", namespaced=True),
        Resource(POD, "pods", "", namespaced=True),
        Resource(NODE, "nodes", "", namespaced=False),  # clusterdns dev: NodePort addresses
    )
}


@dataclass(frozen=True)
class StreamSpec:
    """One list+watch: a kind, where (cluster-wide, one namespace, or one named object) and with which selectors.

    Several streams of one kind (one per namespace when filtering) share the
    kind's store; ``owns`` tells which keys are this stream's share, so a relist
    replaces only those.
    """

    resource: Resource
    namespace: str | None = None  # list/watch in this namespace only
    name: str | None = None  # only the object of this name (fieldSelector metadata.name)
    label_selector: str | None = None
    field_selector: str | None = None

    @property
    def kind(self) -> str:
        return self.resource.kind

    def owns(self, key: Key) -> bool:
        if self.name is not None:
            return key[2] == self.name
        if self.namespace is not None:
            return key[1] == self.namespace
        return True

    @property
    def scope(self) -> str:
        """Where, in words, for log messages."""
        if self.namespace is not None:
            return f'in namespace "{self.namespace}"'
        return "at cluster scope"

    @property
    def thread_name(self) -> str:
        where = self.namespace or self.name
        return f"{THREAD_PREFIX}-{self.resource.plural}" + (f"-{where}" if where else "")

    def get(self, api_client: client.ApiClient, timeout: tuple[float, float], **query: Any) -> Any:
        """One list (or, with ``watch=True``, watch) request of this stream; the response, unread.

        ``query`` holds the API's own parameter names (``limit``, ``continue``,
        ``resourceVersion``, ...); this adds the stream's selectors.
        """
        query["labelSelector"] = self.label_selector or None
        fields = [f for f in (self.field_selector, f"metadata.name={self.name}" if self.name else None) if f]
        query["fieldSelector"] = ",".join(fields) or None
        return client.get(api_client, self.resource.path(self.namespace), query, timeout)


class KindStore(Protocol):
    """Where a stream puts what it reads (see ``KindState`` in kube.py)."""

    def replace(self, stream: StreamSpec, objects: Sequence[KubeObject]) -> None: ...

    def apply(self, stream: StreamSpec, changes: Sequence[tuple[Key, KubeObject | None]]) -> None: ...


# --------------------------------------------------------------------------- outcomes


class Gone(Exception):
    """410: the resourceVersion we hold is compacted away; only a fresh list helps."""


class StreamError(Exception):
    """The watch stream said something we cannot use (an ERROR event, a line that is not JSON)."""


# --------------------------------------------------------------------------- the loop


class ListWatch:
    """The list+watch loop of one stream; :meth:`run` is the thread's body."""

    def __init__(
        self,
        spec: StreamSpec,
        configuration: client.Configuration,
        store: KindStore,
        options: WatchOptions,
        stopping: threading.Event,
        on_restart: Callable[[str, str], None],
    ):
        self.spec = spec
        self.store = store
        self.options = options
        self.resource_version: str | None = None  # None: we must list
        self._configuration = configuration
        self._stopping = stopping
        self._on_restart = on_restart
        self._failures = 0  # in a row; drives the backoff
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._last_complaint: tuple[str, float] = ("", 0.0)
        # What the prober (KubeSource) reads and does; see silent_for, vouch, hung and api_answered.
        self.last_answer = 0.0  # time.time() of the last HTTP answer on this stream (any status)
        self.waiting = False  # between tries, after a failure
        self._last_byte = time.monotonic()  # on the watch stream: a chunk, or the request sent
        self._watching = False
        self._hung = False  # the prober found the API server silent while this watch was
        self._last_failure = ""  # reason of the last restart
        self._wake = threading.Event()

    # ------------------------------------------------------------------ thread body

    def run(self) -> None:
        api_client = client.ApiClient(self._configuration)
        track_connections(api_client, self._connections)
        try:
            while not self._stopping.is_set():
                delay = self._attempt(api_client)
                if delay > 0:
                    self._wake.clear()
                    self.waiting = True
                    if self._wake.wait(delay) and not self._stopping.is_set():
                        # The API answered again: go now, spread a little so replicas do not all hit it at once.
                        self._stopping.wait(random.uniform(0, 0.2))
                    self.waiting = False
        finally:
            api_client.close()

    def interrupt(self) -> None:
        """Wake the thread from any blocking read or wait (called by stop(), from another thread)."""
        self._wake.set()
        shut_connections(self._connections)

    # ------------------------------------------------------------------ for the prober (other threads)

    def silent_for(self, now: float) -> float:
        """Seconds the open watch has sent nothing (0 when not watching)."""
        return now - self._last_byte if self._watching else 0.0

    def vouch(self) -> None:
        """The API server answered a probe: this silent watch is quiet, not hung."""
        self._last_byte = time.monotonic()

    def hung(self) -> None:
        """The API server did not answer a probe while this watch was silent: end the watch."""
        self._hung = True
        self.interrupt()

    @property
    def kept_away(self) -> bool:
        """Waiting to retry because the API server could not be reached (not because it refused or throttled us)."""
        return self.waiting and self._last_failure in UNREACHABLE

    def api_answered(self) -> None:
        """The API server answers again: retry now with the backoff reset, if we were kept away from it."""
        if self.kept_away:
            self._failures = 0
            self._wake.set()

    def _attempt(self, api_client: client.ApiClient) -> float:
        """List if we must, then watch until the stream ends; returns seconds to wait before the next try."""
        try:
            if self.resource_version is None:
                self._list(api_client)
            if self._watch(api_client):
                return self._restarted("closed", logging.DEBUG, "", immediate=True)
            # Ended at once without a byte: a proxy or a broken server; do not spin.
            return self._restarted("closed", logging.WARNING,
                                   f"API server ended the watch of {self.spec.resource.rbac_name} at once; retrying")
        except Exception as exc:  # noqa: BLE001 (every failure is retried; _failed sorts them)
            if self._stopping.is_set():
                return 0.0
            return self._failed(exc)

    # ------------------------------------------------------------------ list

    def _list(self, api_client: client.ApiClient) -> None:
        objects: list[KubeObject] = []
        token: str | None = None
        while True:
            resp = self.spec.get(
                api_client,
                (self.options.connect_timeout, self.options.request_timeout),
                limit=self.options.page_size,
                **{"continue": token},
            )
            self.last_answer = time.time()
            try:
                page = json.loads(resp.data)
            except ValueError as err:
                raise StreamError(f"unreadable list response: {err}") from None
            finally:
                resp.release_conn()
            if not isinstance(page, dict):
                raise StreamError("list response is not a JSON object")
            meta = page.get("metadata") or {}
            for item in page.get("items") or ():
                obj = self._read(item)
                if obj is not None:
                    objects.append(obj)
            token = meta.get("continue")
            if not token:
                break
        self.store.replace(self.spec, objects)
        # Watch from the list's snapshot: nothing between the list and the watch is missed.
        self.resource_version = meta.get("resourceVersion") or None
        self._failures = 0
        log.debug("listed %d %s %s at resourceVersion %s", len(objects), self.spec.resource.rbac_name,
                  self.spec.scope, self.resource_version)

    # ------------------------------------------------------------------ watch

    def _watch(self, api_client: client.ApiClient) -> bool:
        """Follow one watch request until it ends; False if it ended at once with nothing in it."""
        started = time.monotonic()
        timeout = random.randint(*self.options.watch_timeout)
        self._last_byte, self._watching, self._hung = started, True, False
        try:
            resp = self.spec.get(
                api_client,
                # Silence is the prober's business (quiet or hung?); the read timeout only catches
                # a watch the server must have ended already, its end lost on the way.
                (self.options.connect_timeout, timeout + self.options.stall_margin),
                watch=True,
                resourceVersion=self.resource_version,
                allowWatchBookmarks=True,
                timeoutSeconds=timeout,
            )
            self.last_answer = time.time()
            clean = received = False
            try:
                for lines in _lines_by_chunk(resp):
                    self._last_byte = time.monotonic()
                    self.last_answer = time.time()
                    self._failures, received = 0, True
                    self._handle_lines(lines)
                clean = True
            finally:
                if not clean:
                    resp.close()  # a half-read stream cannot go back to the pool
                resp.release_conn()
        finally:
            self._watching = False
        return received or time.monotonic() - started > 1.0

    def _handle_lines(self, lines: list[bytes]) -> None:
        """Apply one chunk's events as one batch; raise Gone/StreamError after applying what came before."""
        changes: list[tuple[Key, KubeObject | None]] = []
        rv = self.resource_version
        failure: Exception | None = None
        for line in lines:
            try:
                event = json.loads(line)
                etype, doc = event["type"], event["object"]
            except (ValueError, KeyError, TypeError):
                etype = doc = None
            if not isinstance(doc, dict):
                failure = StreamError(f"unreadable watch line: {line[:200]!r}")
                break
            if etype == "ERROR":
                failure = _error_event(doc)
                break
            meta = doc.get("metadata")
            if isinstance(meta, dict) and isinstance(meta.get("resourceVersion"), str):
                rv = meta["resourceVersion"]
            if etype in ("ADDED", "MODIFIED"):
                key = _key_of(doc, self.spec.kind)
                if key is not None:
                    changes.append((key, self._read(doc)))  # None (unreadable) withdraws it
            elif etype == "DELETED":
                key = _key_of(doc, self.spec.kind)
                if key is not None:
                    changes.append((key, None))
            # BOOKMARK: only the resourceVersion matters.
        self.store.apply(self.spec, changes)
        self.resource_version = rv
        if failure is not None:
            raise failure

    # ------------------------------------------------------------------ objects

    def _read(self, doc: Any) -> KubeObject | None:
        try:
            return read_object(doc, self.spec.kind, live=True)
        except ObjectError as err:
            log.warning("skipping %s: %s", err.object_ref, err)
            return None

    # ------------------------------------------------------------------ failures

    def _failed(self, exc: Exception) -> float:
        """Log ``exc`` in words, count the restart, and say how long to wait."""
        what = f"{self.spec.resource.rbac_name} {self.spec.scope}"
        if isinstance(exc, Gone) or (isinstance(exc, client.ApiException) and exc.status == 410):
            self.resource_version = None
            return self._restarted("expired", logging.INFO, f"resourceVersion expired for {what}; relisting",
                                   immediate=True)
        if self._hung:
            self._hung = False
            return self._restarted(
                "unresponsive", logging.WARNING,
                f"the API server answers nothing (a watch of {what} silent for over "
                f"{self.options.inactivity_timeout:g}s and a probe unanswered for {self.options.probe_timeout:g}s); "
                "reconnecting",
            )
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
            if self.resource_version is None:  # a list page: the server took the request and never answered
                return self._restarted(
                    "unresponsive", logging.WARNING,
                    f"the API server did not answer a list of {what} within {self.options.request_timeout:g}s; retrying",
                )
            return self._restarted(
                "stalled", logging.INFO,
                f"the watch of {what} outlived its timeout by {self.options.stall_margin:g}s; reconnecting",
                immediate=True,
            )
        if isinstance(exc, client.ApiException):
            self.last_answer = time.time()
            return self._api_error(exc, what)
        if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
            return self._restarted("disconnected", logging.WARNING,
                                   f"connection to the API server lost watching {what}: {exc}")
        if isinstance(exc, StreamError):
            return self._restarted("error", logging.WARNING, f"bad watch stream for {what}: {exc}")
        log.exception("unexpected error watching %s", what)
        return self._restarted("error", logging.DEBUG, "")

    def _api_error(self, exc: client.ApiException, what: str) -> float:
        status = exc.status or 0
        detail = _status_message(exc)
        if status == 429:
            wait = _retry_after(exc, self.options.max_retry_after)
            self._restarted("throttled", logging.INFO, f"API server asks to slow down ({what}); retrying in {wait:g}s")
            return wait
        if status == 403:
            r = self.spec.resource
            verb = "list" if self.resource_version is None else "watch"
            message = (
                f"forbidden: cannot {verb} {r.rbac_name} {self.spec.scope}: grant list/watch on "
                f"{r.plural} (see deploy/00-rbac.yaml); the API server said: {detail}"
            )
            return self._restarted("forbidden", logging.ERROR, message)
        if status == 401:
            return self._restarted("unauthorized", logging.ERROR,
                                   f"unauthorized: the API server rejected our credentials ({what}): {detail}")
        if status == 404:
            return self._restarted("error", logging.ERROR,
                                   f"the API server does not serve {what}: {detail} "
                                   "(is the cluster older than the API we need?)")
        if status == 0:  # the client's way of reporting a TLS failure
            return self._restarted("disconnected", logging.ERROR,
                                   f"TLS error talking to the API server ({what}): {exc.reason}")
        return self._restarted("error", logging.WARNING, f"API server error {status} for {what}: {detail}")

    def _restarted(self, reason: str, level: int, message: str, immediate: bool = False) -> float:
        """Count and log a restart; the backoff before the next try.

        ``immediate``: retry at once the first time (a relist after 410, a reconnect
        after a stall or a routine end), but back off if it keeps happening with no
        data in between, so a misbehaving server never makes us spin.
        """
        self._last_failure = reason
        self._on_restart(self.spec.kind, reason)
        if message:
            self._complain(level, message)
        self._failures += 1
        if immediate and self._failures == 1:
            return 0.0
        return _backoff(self._failures, self.options.backoff_base, self.options.max_backoff)

    def _complain(self, level: int, message: str) -> None:
        # A failure that repeats every few seconds is logged once a minute; the rest go to debug.
        now = time.monotonic()
        last_message, last_time = self._last_complaint
        if level > logging.INFO and message == last_message and now - last_time < 60:
            level = logging.DEBUG
        else:
            self._last_complaint = (message, now)
        log.log(level, "%s", message)


# --------------------------------------------------------------------------- helpers


def _lines_by_chunk(resp: urllib3.HTTPResponse) -> Iterator[list[bytes]]:
    """The complete lines of a watch stream, grouped as they arrived (one list per read)."""
    buffer = b""
    for data in resp.stream(amt=None, decode_content=True):
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        lines = [line for line in lines if line.strip()]
        if lines:
            yield lines


def _key_of(doc: Any, kind: str) -> Key | None:
    """The store key of a raw object, without validating the rest (enough to delete it)."""
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return None
    namespace = "" if kind == NAMESPACE else (meta.get("namespace") or "default")
    return (kind, namespace, meta["name"])


def _error_event(status: Any) -> Exception:
    """An ERROR event's Status as the exception to raise."""
    if not isinstance(status, dict):
        return StreamError(f"watch ERROR event: {status!r}")
    if status.get("code") == 410 or status.get("reason") in ("Expired", "Gone"):
        return Gone(status.get("message", "expired"))
    return StreamError(f"watch ERROR event {status.get('code')} {status.get('reason')}: {status.get('message')}")


def _status_message(exc: client.ApiException) -> str:
    try:
        body = json.loads(exc.body or "")
        return str(body.get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


def _retry_after(exc: client.ApiException, cap: float) -> float:
    """Seconds from a Retry-After header (seconds form; an HTTP date or junk means 1 s)."""
    value = (exc.headers or {}).get("Retry-After")
    try:
        seconds = float(str(value))
    except (TypeError, ValueError):
        seconds = 1.0
    return min(max(seconds, 0.0), cap)


def _backoff(failures: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: half of the step fixed, half random, so replicas spread out."""
    step = min(cap, base * 2 ** (failures - 1))
    return step / 2 + random.uniform(0, step / 2)


def shut_connections(connections: weakref.WeakSet[Any]) -> None:
    """Shut down the sockets of ``connections``: a thread blocked reading one wakes at once."""
    for conn in list(connections):
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing to wake
                sock.shutdown(socket.SHUT_RDWR)


def track_connections(api_client: client.ApiClient, connections: weakref.WeakSet[Any]) -> None:
    """Make ``api_client`` remember the connections it opens, so stop() can shut their sockets.

    A thread blocked reading a watch, or waiting for response headers, only wakes
    when its socket does: clearing the pool does not touch connections in use, and
    the read timeout is more than a minute.  Shutting the socket down ends the
    read at once.  urllib3 makes pools from ``pool_classes_by_scheme``; we hand it
    subclasses that record each new connection.
    """
    manager = api_client.rest_client.pool_manager
    classes = getattr(manager, "pool_classes_by_scheme", None)
    if not isinstance(classes, dict):
        return  # e.g. a SOCKS proxy manager: stop() then waits for the read timeout

    def tracked(base: type[urllib3.HTTPConnectionPool]) -> type:
        def _new_conn(self: Any) -> Any:
            conn = base._new_conn(self)
            connections.add(conn)
            return conn

        return type(f"Tracked{base.__name__}", (base,), {"_new_conn": _new_conn})

    manager.pool_classes_by_scheme = {scheme: tracked(cls) for scheme, cls in classes.items()}
