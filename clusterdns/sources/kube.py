"""KubeSource: Services, EndpointSlices, Namespaces (and Pods if asked) from a live Kubernetes API.

Each kind runs a list+watch loop in its own thread (the official client is
synchronous; see :mod:`.kube_watch`).  What the loops read is turned into
:mod:`clusterdns.events` and handed to the sink on the event loop, through
``loop.call_soon_threadsafe``.

What reaches the sink is kept small and meaningful:

* The first list of a kind is one ``Replace`` followed by ``Synced``; a relist
  after the server forgot our resourceVersion (410) is one ``Replace`` too, so
  the store swaps the kind at once: no window where names vanish, and objects
  deleted while we were away are gone.
* A change the DNS cannot see (an annotation, a status field we drop) is not
  emitted: the source remembers the last value it sent for each key and
  compares (the typed objects are plain values, so this is ``==``).
* Batches that pile up while the event loop is busy are merged into one.

With a ``namespaces`` filter each kind is watched per namespace (one stream
each, which is also what namespace-scoped RBAC allows); a relist of one
namespace then replaces that namespace's share and keeps the others'.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
import weakref
from typing import Any, Callable, Collection, Iterable, Sequence

from . import kube_client as client

from ..events import Delete, Event, Replace, Sink, Synced, Upsert
from ..objects import ENDPOINT_SLICE, ENDPOINTS, NAMESPACE, NODE, POD, SERVICE, Key, KubeObject
from .kube_watch import (
    POD_FIELD_SELECTOR,
    RESOURCES,
    THREAD_PREFIX,
    ListWatch,
    StreamSpec,
    WatchOptions,
    shut_connections,
    track_connections,
)

log = logging.getLogger("clusterdns.sources.kube")

DEFAULT_KINDS = (NAMESPACE, SERVICE, ENDPOINT_SLICE)
# CoreDNS's `labels` option filters Services and endpoints; namespaces have their own selector.
LABEL_FILTERED_KINDS = (SERVICE, ENDPOINT_SLICE, ENDPOINTS)

from . import KubeConfigError  # noqa: E402 (defined where importing it costs nothing)

__all__ = ["KubeSource", "KubeConfigError", "load_client_configuration", "DEFAULT_KINDS", "THREAD_PREFIX"]


def load_client_configuration(kubeconfig: str | None = None, context: str | None = None) -> client.Configuration:
    """Client configuration the way CoreDNS and kubectl find it.

    An explicit ``kubeconfig`` or ``context`` wins; otherwise, inside a pod, the
    service account (in-cluster config); otherwise ``$KUBECONFIG`` (a
    ``:``-separated list is merged) or ``~/.kube/config``.
    """
    configuration = client.Configuration()
    in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    try:
        if kubeconfig is None and context is None and in_pod:
            client.load_incluster_config(client_configuration=configuration)
        else:
            path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
            # persist_config=False: never write refreshed tokens back into the user's file.
            client.load_kube_config(config_file=path, context=context, client_configuration=configuration,
                                    persist_config=False)
    except (client.ConfigException, OSError) as err:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise KubeConfigError(
            f"cannot load Kubernetes credentials: {err} (not in a pod; tried kubeconfig {where}"
            + (f", context {context}" if context else "") + ")"
        ) from err
    return _own_retries(configuration)


def _own_retries(configuration: client.Configuration) -> client.Configuration:
    # Our loops own retries and backoff: urllib3's own retries would repeat a stalled
    # request (multiplying the inactivity timeout) and hide failures from the logs, and
    # the client's client-go-style retries would sleep out a Retry-After where stop()
    # cannot interrupt them.
    configuration.retries = False
    configuration.client_go_retries = False
    return configuration


# --------------------------------------------------------------------------- delivery to the loop


class _Outbox:
    """Hands events to the sink on the event loop, in order, merging batches that pile up."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Sink):
        self._loop = loop
        self._sink = sink
        self._lock = threading.Lock()
        self._pending: list[Event] = []
        self._scheduled = False
        self.closed = False

    def put(self, events: Sequence[Event]) -> None:
        if not events:
            return
        with self._lock:
            if self.closed:
                return
            self._pending.extend(events)
            if self._scheduled:
                return  # the flush already queued will take these too
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._flush)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.closed = True

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._pending.clear()

    def _flush(self) -> None:  # on the event loop
        with self._lock:
            events, self._pending = self._pending, []
            self._scheduled = False
            if self.closed:
                return
        self._sink(events)


# --------------------------------------------------------------------------- per-kind state


class KindState:
    """What the sink was last told about one kind; shared by that kind's streams.

    Updates and the hand-over to the outbox happen under one lock, so the order
    of batches on the loop is the order in which this state changed.
    """

    def __init__(self, kind: str, streams: Iterable[StreamSpec], outbox: _Outbox):
        self.kind = kind
        self.synced = False
        self.last_sync_time: float | None = None
        self._outbox = outbox
        self._lock = threading.Lock()
        self._emitted: dict[Key, KubeObject] = {}
        self._unlisted = set(streams)  # streams yet to finish their first list

    def replace(self, stream: StreamSpec, objects: Sequence[KubeObject]) -> None:
        """A fresh list of ``stream``'s share of the kind."""
        with self._lock:
            fresh = {k: v for k, v in self._emitted.items() if not stream.owns(k)}
            fresh.update((obj.key, obj) for obj in objects)
            events: list[Event] = []
            if fresh != self._emitted:
                events.append(Replace(self.kind, tuple(fresh.values())))
                self._emitted = fresh
            self._unlisted.discard(stream)
            if not self.synced and not self._unlisted:
                self.synced = True
                events.append(Synced(self.kind))
            self.last_sync_time = time.time()
            self._outbox.put(events)

    def apply(self, stream: StreamSpec, changes: Sequence[tuple[Key, KubeObject | None]]) -> None:
        """Watch changes in arrival order; ``None`` means the key is gone (deleted or unreadable)."""
        with self._lock:
            events: list[Event] = []
            for key, obj in changes:
                if obj is None:
                    if self._emitted.pop(key, None) is not None:
                        events.append(Delete(key))
                elif self._emitted.get(key) != obj:  # invisible-to-DNS changes stop here
                    self._emitted[obj.key] = obj  # (the object's own key: one tuple shared with the store)
                    events.append(Upsert(obj))
            self.last_sync_time = time.time()  # events and bookmarks both say "up to date"
            self._outbox.put(events)


# --------------------------------------------------------------------------- the source


class KubeSource:
    """Keep the cluster store in step with the Kubernetes API.

    ``sink(events)`` is called on ``loop`` (by default the loop running when
    :meth:`start` is called).  ``on_restart(kind, reason)`` is called from the
    watch threads each time a stream restarts, with ``reason`` one of
    ``closed`` (routine end by the server), ``expired`` (410: relist),
    ``stalled`` (a watch open past its timeout), ``unresponsive`` (the API server
    took a request and answered nothing), ``disconnected``, ``throttled`` (429),
    ``forbidden`` (403), ``unauthorized`` (401) or ``error``.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        configuration: client.Configuration | None = None,
        kinds: Collection[str] = DEFAULT_KINDS,
        namespaces: Collection[str] | None = None,
        label_selector: str | None = None,
        namespace_label_selector: str | None = None,
        options: WatchOptions = WatchOptions(),
        on_restart: Callable[[str, str], None] | None = None,
        on_contact: Callable[[], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ):
        unknown = set(kinds) - set(RESOURCES)
        if unknown:
            raise ValueError(f"cannot watch {sorted(unknown)}: expected some of {sorted(RESOURCES)}")
        self.sink = sink
        self.kinds = tuple(k for k in RESOURCES if k in kinds)  # a fixed order: namespaces first
        self.namespaces = frozenset(namespaces) if namespaces else None
        self.label_selector = label_selector or None
        self.namespace_label_selector = namespace_label_selector or None
        self.options = options
        self.on_restart = on_restart
        self.on_contact = on_contact
        self.probes = 0  # requests the prober made
        self.restarts: collections.Counter[tuple[str, str]] = collections.Counter()  # (kind, reason)
        self.relists: collections.Counter[str] = collections.Counter()  # relists after a 410, per kind
        self._counter_lock = threading.Lock()
        self._kubeconfig, self._context, self._configuration = kubeconfig, context, configuration
        self._loop = loop
        self._stopping = threading.Event()
        self._outbox: _Outbox | None = None
        self._states: dict[str, KindState] = {}
        self._loops: list[ListWatch] = []
        self._threads: list[threading.Thread] = []
        self._probe_client: client.ApiClient | None = None
        self._probe_connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._probe_answer = 0.0  # time.time() the prober last got an answer

    # ------------------------------------------------------------------ what to watch

    def streams(self) -> list[StreamSpec]:
        """One list+watch per kind, or per kind and namespace when filtering by namespace."""
        specs = []
        for kind in self.kinds:
            resource = RESOURCES[kind]
            labels = self.label_selector if kind in LABEL_FILTERED_KINDS else None
            fields = POD_FIELD_SELECTOR if kind == POD else None
            if kind == NAMESPACE:
                labels = self.namespace_label_selector
                # Only the namespaces we serve: one named watch each, which RBAC can grant by resourceNames.
                names = sorted(self.namespaces) if self.namespaces else [None]
                specs += [StreamSpec(resource, name=n, label_selector=labels) for n in names]
            elif kind == NODE:
                specs.append(StreamSpec(resource))  # cluster-scoped, whatever the namespace filter
            else:
                where = sorted(self.namespaces) if self.namespaces else [None]
                specs += [
                    StreamSpec(resource, namespace=ns, label_selector=labels, field_selector=fields) for ns in where
                ]
        return specs

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load credentials and start one thread per stream.  Raises :class:`KubeConfigError`.

        Call it from the event loop (or pass ``loop=`` to the constructor).
        """
        if self._threads:
            raise RuntimeError("KubeSource already started")
        loop = self._loop or asyncio.get_running_loop()
        if self._configuration is not None:
            configuration = _own_retries(self._configuration)
        else:
            configuration = load_client_configuration(self._kubeconfig, self._context)
        self._outbox = _Outbox(loop, self.sink)
        specs = self.streams()
        by_kind: dict[str, list[StreamSpec]] = collections.defaultdict(list)
        for spec in specs:
            by_kind[spec.kind].append(spec)
        self._states = {kind: KindState(kind, streams, self._outbox) for kind, streams in by_kind.items()}
        for spec in specs:
            watch = ListWatch(spec, configuration, self._states[spec.kind], self.options, self._stopping,
                              self._restarted)
            thread = threading.Thread(target=watch.run, name=spec.thread_name, daemon=True)
            self._loops.append(watch)
            self._threads.append(thread)
        self._probe_client = client.ApiClient(configuration)
        track_connections(self._probe_client, self._probe_connections)
        self._threads.append(threading.Thread(target=self._probe_loop, name=f"{THREAD_PREFIX}-probe", daemon=True))
        for thread in self._threads:
            thread.start()
        log.info("watching %s", ", ".join(f"{s.resource.rbac_name} {s.scope}" for s in specs))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every thread and wait for them (at most ``timeout`` seconds in all).

        No sink call happens after this returns, even one already queued on the loop.
        """
        self._stopping.set()
        if self._outbox is not None:
            self._outbox.close()
        deadline = time.monotonic() + timeout
        # Interrupt until every thread is out: a thread between two requests may open (or
        # reconnect) a socket just after an interrupt, and only the next one reaches it.
        while any(t.is_alive() for t in self._threads) and time.monotonic() < deadline:
            for watch in self._loops:
                watch.interrupt()
            shut_connections(self._probe_connections)
            for thread in self._threads:
                thread.join(min(0.05, max(0.0, deadline - time.monotonic())))
        if self._probe_client is not None:
            self._probe_client.close()
        left = [t.name for t in self._threads if t.is_alive()]
        if left:
            log.warning("watch threads still running after %gs: %s", timeout, ", ".join(left))

    # ------------------------------------------------------------------ state

    @property
    def synced(self) -> dict[str, bool]:
        """Per kind: has the first complete list been delivered?"""
        return {kind: state.synced for kind, state in self._states.items()}

    @property
    def last_sync_time(self) -> dict[str, float | None]:
        """Per kind: wall-clock time of the last list, event or bookmark (when we last knew we were current)."""
        return {kind: state.last_sync_time for kind, state in self._states.items()}

    @property
    def last_contact(self) -> float:
        """time.time() of the last HTTP answer from the API server (any stream, any status, or a probe)."""
        return max([self._probe_answer, *(w.last_answer for w in self._loops)])

    # ------------------------------------------------------------------ quiet or hung?

    def _probe_loop(self) -> None:
        """Tell a quiet API server from a hung one, and bring waiting streams back as soon as it answers.

        Silence alone proves nothing: a real apiserver can go minutes without a byte on a
        watch of an unchanging resource.  So a watch silent for ``inactivity_timeout`` gets
        a cheap request of its own (a limit=1 list of the same resource).  An answer vouches
        for every silent watch; none ends them, which the loops report as ``unresponsive``.
        While streams wait to reconnect, the same request every ``probe_while_down``
        seconds lets them go again (backoff reset) the moment the server answers.
        """
        options = self.options
        api = self._probe_client
        assert api is not None  # start() makes it before starting this thread
        tick = min(0.25, options.probe_while_down, options.inactivity_timeout / 4)
        last_probe = 0.0
        while not self._stopping.wait(tick):
            now = time.monotonic()
            silent = [w for w in self._loops if w.silent_for(now) >= options.inactivity_timeout]
            waiting = [w for w in self._loops if w.kept_away]  # never probe an API that throttles or refuses us
            if not silent and not (waiting and now - last_probe >= options.probe_while_down):
                continue
            last_probe = now
            answered = self._probe(api, (silent or waiting)[0])
            if self._stopping.is_set():
                return
            if answered:
                for watch in silent:
                    watch.vouch()
                for watch in waiting:
                    watch.api_answered()
                if self.on_contact is not None:
                    self.on_contact()
            else:
                for watch in silent:
                    watch.hung()

    def _probe(self, api: client.ApiClient, watch: ListWatch) -> bool:
        """One limit=1 list for ``watch``'s resource: did the API server answer (any HTTP status)?"""
        self.probes += 1
        try:
            resp = watch.spec.get(api, (self.options.connect_timeout, self.options.probe_timeout),
                                  limit=1, resourceVersion="0")
            resp.release_conn()
        except client.ApiException:
            pass  # an error status is an answer
        except Exception as exc:  # noqa: BLE001 (refused, reset, timed out: no answer)
            log.debug("probe of the API server (%s) unanswered: %s", watch.spec.resource.rbac_name, exc)
            return False
        self._probe_answer = time.time()
        return True

    def _restarted(self, kind: str, reason: str) -> None:  # on a watch thread
        with self._counter_lock:
            self.restarts[(kind, reason)] += 1
            if reason == "expired":
                self.relists[kind] += 1
        if self.on_restart is not None:
            try:
                self.on_restart(kind, reason)
            except Exception:  # noqa: BLE001 (a metrics hook must not kill a watch thread)
                log.exception("on_restart callback failed")
