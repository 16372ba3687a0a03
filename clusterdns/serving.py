"""``clusterdns serve``: start the sources, the DNS listeners and the HTTP listener; stop them all.

:class:`Serving` is what the command runs and what end-to-end tests start: it
owns every task, socket and thread it creates, and :meth:`Serving.close`
releases them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import errno
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from . import heap, rewrite
from .acl import LOOPBACK, parse_networks
from .app import ClusterDNS
from .events import Replace
from .forward import Forwarder, ForwardSettings
from .forward.loop import arm, find_loop
from .hosts import Hosts, HostsSettings
from .http import PATHS, HttpServer, start_http
from .metrics import Metrics
from .querylog import QueryLog
from .objects import ENDPOINT_SLICE, KINDS, NAMESPACE, POD, SERVICE
from .rewrite import Rewrite
from .server import Answers, DnsServer, TcpLimits
from .zoneview import zone_json
from .settings import Settings
from .sources.watch_options import CONTACT_LOST, WatchOptions
from .sources.manifests import DEFAULT_MAX_BYTES, DEFAULT_SETTLE, ManifestSource, display

if TYPE_CHECKING:
    from .sources.kube import KubeSource
    from .sources.kube_client import Configuration

log = logging.getLogger("clusterdns")

GAUGE_REFRESH = 5.0  # seconds between housekeeping rounds (log flushes, the API-contact check)
BIG_BATCH = 1000  # objects in one batch of watch events worth freezing the heap after (see _freeze_heap)
# Tasks that end by themselves when _stop is set (cancelling a file watch would leave its thread behind).
STOPPED_BY_EVENT = ("clusterdns-manifest-watch", "clusterdns-hosts-watch")


class NotSynced(Exception):
    """A reload's new zone did not sync in time; the running configuration stays."""


class ListenError(Exception):
    """A DNS or HTTP address could not be bound; the message names it."""


@dataclass
class ServeOptions:
    settings: Settings = field(default_factory=Settings)
    listen: list[tuple[str, int]] = field(default_factory=lambda: [("127.0.0.1", 5353)])
    http: tuple[str, int] | None = ("127.0.0.1", 8080)
    # More HTTP listeners, each serving only its paths (a Corefile's health :8080, ready :8181, prometheus :9153).
    http_listeners: tuple[tuple[str, int, frozenset[str]], ...] = ()
    manifests: list[str] | None = None  # None: a live cluster
    kubeconfig: str | None = None
    context: str | None = None
    namespaces: frozenset[str] | None = None
    labels: str | None = None
    namespace_labels: str | None = None
    startup_timeout: float = 5.0
    watch: WatchOptions = field(default_factory=WatchOptions)  # how the watch source talks to the API
    ready_grace: float = 300.0  # seconds /ready stays true after the API went away
    kube_configuration: Configuration | None = None  # a ready kubernetes.client.Configuration (tests)
    kube_endpoint: str | None = None  # the API server's URL (a Corefile's kubernetes { endpoint URL })
    lameduck: float = 0.0  # seconds to keep answering, not ready, after SIGTERM
    reuse_port: bool = False  # SO_REUSEPORT on the DNS sockets (--workers: several processes on one port)
    forward: ForwardSettings | None = None  # None: names outside the zones are REFUSED (--no-forward)
    corefile: str | None = None  # the Corefile these options came from (reload re-reads it)
    rewrites: tuple[Rewrite, ...] = ()  # rewrite name rules, applied around the responder
    transfer_to: tuple | None = None  # networks allowed AXFR over TCP; None: loopback only
    http_debug_from: tuple = ()  # networks besides loopback allowed GET /zone
    max_manifest_bytes: int = DEFAULT_MAX_BYTES  # larger manifest files are skipped unread
    manifest_settle: float = DEFAULT_SETTLE  # a changed file is applied once unchanged this long
    http_required: bool = True  # False: the default address, and DNS is served even if it cannot be bound
    drop_low_source_ports: bool = False
    tcp_limits: TcpLimits = field(default_factory=TcpLimits)
    hosts: HostsSettings | None = None  # hosts-file entries answered before the cluster zone
    loadbalance: bool = True  # rotate A/AAAA records between responses (CoreDNS loadbalance, in kubeadm's Corefile)
    log_queries: frozenset[str] | None = None  # query log classes ({"all"}, {"denial", "error"}, ...); None: off


class Serving:
    def __init__(self, options: ServeOptions, metrics: Metrics | None = None):
        if options.forward is not None and not options.settings.recursion:
            options = dataclasses.replace(options, settings=dataclasses.replace(options.settings, recursion=True))
        self.options = options
        self.forwarder: Forwarder | rewrite.RewritingForwarder | None = None
        self.failed = asyncio.Event()  # a fatal problem found after start (a forwarding loop)
        self.failure = ""
        self.metrics = metrics or Metrics(server=_server_label(options.listen))
        # What was asked for → what is open, so a reload keeps the listeners that did not change.
        self._dns_listeners: dict[tuple[str, int], tuple[str, int]] = {}
        self._http_listeners: dict[tuple[str, int, frozenset[str]], HttpServer] = {}
        self.dns: ClusterDNS | None = None
        self.manifests: ManifestSource | None = None
        self.kube: KubeSource | None = None  # when serving a live cluster
        self.hosts: Hosts | None = None
        self.dns_server: DnsServer | None = None
        self.http: HttpServer | None = None  # the first HTTP listener
        self.http_servers: list[HttpServer] = []
        self._stop = asyncio.Event()
        self.draining = False  # shutting down: keep answering, but tell probes not to send more
        self._tasks: list[asyncio.Task] = []
        self._api_down_since: float | None = None
        self._synced_event = asyncio.Event()
        self._started = False  # start() has returned
        self._event_loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ start

    async def start(self, take_over: Serving | None = None) -> None:
        """Load or sync the zone, then open the listeners.  Raises ListenError if one cannot bind.

        With ``take_over`` (a reload), the new zone must sync first (else
        :class:`NotSynced`, and ``take_over`` is untouched); then its listeners
        are taken over, answering from the new zone from the next query on,
        those no longer wanted are closed and new ones opened.  ``take_over``
        is left owning only its old sources, for its :meth:`close`.
        """
        options = self.options
        self._event_loop = asyncio.get_running_loop()
        if options.manifests is not None:
            dns = self._start_manifests(options.manifests)
        else:
            dns = await self._start_kube()
        dns.responder.loadbalance = options.loadbalance
        if options.hosts is not None:
            self.hosts = hosts = Hosts(options.hosts)
            dns.responder.use_hosts(hosts)
            self.metrics.watch_hosts(lambda: hosts.table.entry_count(), lambda: hosts.loaded_at)
            self._tasks.append(asyncio.create_task(self.hosts.watch(self._stop), name="clusterdns-hosts-watch"))
        forwarder = None  # the forwarder itself (the loop probe's), wrapped below with rewrite rules
        loop_check = False
        if options.forward is not None:
            self.forwarder = forwarder = Forwarder(options.forward, self.metrics)
            loop_check = options.forward.loop_check
            if loop_check:
                arm(forwarder)  # know every probe name of this launch before the listeners open
            forwarder.loadbalance = options.loadbalance
        answers: Answers = dns.responder
        if options.rewrites:  # only then: the responder's own respond stays the hot path
            answers = rewrite.RewritingResponder(dns.responder, options.rewrites)
            if forwarder is not None:  # a name rewritten to an outside name is asked upstream as rewritten
                self.forwarder = rewrite.RewritingForwarder(forwarder, options.rewrites)
        if take_over is not None:
            if not dns.synced:
                missing = ", ".join(sorted(dns.required_kinds - dns.cluster.synced))
                raise NotSynced(f"the new configuration's zone did not sync within {options.startup_timeout:g}s "
                                f"(waiting for {missing})")
            await self._take_over(take_over, answers)
            self._read_gauges_live()
            self._tasks.append(asyncio.create_task(self._refresh_gauges(), name="clusterdns-gauges"))
            if forwarder is not None and loop_check:  # a reload may have made a loop
                self._tasks.append(asyncio.create_task(self._check_loop(forwarder), name="clusterdns-loop-probe"))
            self._started = True
            return
        self.dns_server = DnsServer(
            answers,
            metrics=self.metrics,
            zone_label=options.settings.zone,
            tcp_limits=options.tcp_limits,
            drop_low_source_ports=options.drop_low_source_ports,
            reuse_port=options.reuse_port,
            forwarder=self.forwarder,
            query_log=QueryLog(options.log_queries) if options.log_queries else None,
        )
        if options.transfer_to is not None:
            self.dns_server.transfer_to = options.transfer_to
        what, host, port = "DNS", "", 0
        try:
            for host, port in options.listen:
                self._dns_listeners[(host, port)] = await self.dns_server.listen(host, port)
            for host, port, paths in self._wanted_http():
                what = "HTTP"
                await self._start_http(host, port, paths)
        except OSError as exc:
            await self.close()
            raise ListenError(f"cannot listen for {what} on {host} port {port}: {_reason(exc)}{_bind_hint(what, port, exc)}") from exc
        self._read_gauges_live()
        self._tasks.append(asyncio.create_task(self._refresh_gauges(), name="clusterdns-gauges"))
        if forwarder is not None and loop_check:
            self._tasks.append(asyncio.create_task(self._check_loop(forwarder), name="clusterdns-loop-probe"))
        self._started = True

    async def _check_loop(self, forwarder: Forwarder) -> None:
        problem = await find_loop(forwarder)
        if problem:
            log.error("%s", problem)
            self.failure = problem
            self.failed.set()

    def _wanted_http(self) -> list[tuple[str, int, frozenset[str]]]:
        options = self.options
        return ([(*options.http, frozenset(PATHS))] if options.http is not None else []) + list(options.http_listeners)

    async def _take_over(self, old: Serving, answers: Answers) -> None:
        """A reload: answer on ``old``'s listeners from ``answers``; close what is gone, open what is new."""
        dns_server = old.dns_server
        assert dns_server is not None  # old is the running Serving: it has started its listeners
        self.dns_server, old.dns_server = dns_server, None
        dns_server.use(answers, self.forwarder)
        self.failed = old.failed  # whoever waits for a fatal problem keeps waiting on the same event
        self._reload_query_log(dns_server.query_log)
        if self.options.transfer_to is not None:
            dns_server.transfer_to = self.options.transfer_to
        wanted = set(self.options.listen)
        for requested, bound in old._dns_listeners.items():
            if requested in wanted:
                self._dns_listeners[requested] = bound
            else:
                await dns_server.close_listener(bound)
        for key in self._wanted_http():
            server = old._http_listeners.pop(key, None)
            if server is not None:
                server.rebind(self.readiness, self.zone_view if key[2] == set(PATHS) else None)
                old.http_servers.remove(server)
                self._http_listeners[key] = server
                self.http_servers.append(server)
                self.http = self.http or server
        for server in old.http_servers:  # no longer wanted: free their ports before opening new ones
            await server.close()
        old.http_servers.clear()
        old.http = None
        for host, port in self.options.listen:  # a listener that cannot be bound is reported, the rest serve on
            if (host, port) not in self._dns_listeners:
                try:
                    self._dns_listeners[(host, port)] = await dns_server.listen(host, port)
                except OSError as exc:
                    log.error("reload: cannot listen for DNS on %s port %d: %s", host, port, _reason(exc))
        for host, port, paths in self._wanted_http():
            if (host, port, paths) not in self._http_listeners:
                try:
                    await self._start_http(host, port, paths)
                except OSError as exc:
                    log.error("reload: cannot listen for HTTP on %s port %d: %s", host, port, _reason(exc))

    def _reload_query_log(self, running) -> None:
        wanted = self.options.log_queries
        if running is not None and wanted:
            running.classes, running.everything = frozenset(wanted), "all" in wanted  # the listeners share it
        elif bool(running) != bool(wanted):
            log.warning("reload: the query log is %s only after a restart (the open listeners are kept)",
                        "turned on" if wanted else "turned off")

    async def _start_http(self, host: str, port: int, paths: frozenset[str]) -> None:
        try:
            # /zone (a debugging view) only beside all three probes: the --http listener, not a Corefile's
            everything = paths == set(PATHS)
            server = await start_http(
                host, port, self.metrics, self.readiness,
                zone_view=self.zone_view if everything else None,
                zone_clients=parse_networks(",".join(LOOPBACK), "loopback") + tuple(self.options.http_debug_from),
                paths=paths,
            )
        except OSError as exc:
            if self.options.http_required:
                raise
            # Only the default address: DNS matters more than probes on a laptop where 8080 is busy.
            log.warning(
                "cannot listen for HTTP on %s port %d: %s; serving DNS without /health, /ready and /metrics "
                "(choose a free address with --http HOST:PORT, or turn it off with --http '')",
                host, port, _reason(exc),
            )
            return
        self.http_servers.append(server)
        self._http_listeners[(host, port, paths)] = server
        self.http = self.http or server
        served = "health, readiness and metrics" if paths == set(PATHS) else " and ".join(sorted(paths))
        log.info("%s on http://%s:%d/", served, _host_for_url(host), server.port)

    def _start_manifests(self, paths: list[str]) -> ClusterDNS:
        started = time.monotonic()
        self.dns = dns = ClusterDNS.for_manifests(self.options.settings)
        self.manifests = ManifestSource(
            paths, self._manifest_events, on_error=self._manifest_error,
            max_bytes=self.options.max_manifest_bytes, settle=self.options.manifest_settle,
            on_missing=self.metrics.set_manifest_paths_missing,
        )
        with heap.collection_paused():
            self.manifests.load()
        heap.release()
        errors = sum(len(m) for m in self.manifests.errors.values())
        log.info(
            "loaded %s in %.2fs: %s; %d names, %d records%s",
            ", ".join(paths), time.monotonic() - started, self._object_summary(),
            len(dns.zone.names()), dns.zone.record_count,
            f"; {errors} error(s) above, those files were skipped" if errors else "",
        )
        for kind in KINDS:
            self.metrics.mark_synced(kind)
        self._tasks.append(asyncio.create_task(self.manifests.watch(self._stop), name="clusterdns-manifest-watch"))
        return dns

    async def _start_kube(self) -> ClusterDNS:
        from .sources.kube import KubeSource  # the kubernetes client is heavy: import only when used

        options = self.options
        kinds = [NAMESPACE, SERVICE] + ([] if options.settings.noendpoints else [ENDPOINT_SLICE])
        if options.settings.pods == "verified" or options.settings.pod_names:
            kinds.append(POD)
        self.dns = dns = ClusterDNS(options.settings, required_kinds=kinds,
                                    require_namespace=bool(options.namespace_labels))
        dns.defer_until_synced()
        self.kube = KubeSource(
            self._kube_events,
            kubeconfig=options.kubeconfig,
            context=options.context,
            configuration=options.kube_configuration or self._endpoint_configuration(),
            kinds=kinds,
            namespaces=options.namespaces,
            label_selector=options.labels,
            namespace_label_selector=options.namespace_labels,
            options=options.watch,
            on_restart=self._watch_restarted,
            on_contact=self._api_answered,
        )
        self.kube.start()
        self.metrics.set_api_reachable(True)
        started = time.monotonic()
        deadline = started + options.startup_timeout
        while not dns.synced and time.monotonic() < deadline:
            await self._synced_or_timeout(min(1.0, deadline - time.monotonic()))
            if not dns.synced:  # a status line each second of a long first sync
                waiting = ", ".join(sorted(dns.required_kinds - dns.cluster.synced))
                log.info("syncing with the API: %s so far; waiting for %s", self._object_summary() or "nothing", waiting)
        if dns.synced:
            heap.release()
            log.info("synced with the API in %.2fs: %s", time.monotonic() - started, self._object_summary())
        else:
            dns.build_pending()
            missing = sorted(set(kinds) - dns.cluster.synced)
            log.warning(
                "not synced after %.1fs (still waiting for %s): serving what is known; "
                "misses answer SERVFAIL until the first full sync",
                options.startup_timeout, ", ".join(missing),
            )
        return dns

    def _endpoint_configuration(self) -> Configuration | None:
        """The client configuration for a Corefile's ``endpoint URL``: the kubeconfig's credentials, if any."""
        options = self.options
        if not options.kube_endpoint:
            return None
        from .sources import kube_client as client
        from .sources.kube import load_client_configuration

        configuration = load_client_configuration(options.kubeconfig, options.context) if options.kubeconfig else client.Configuration()
        configuration.host = options.kube_endpoint
        return configuration

    async def _synced_or_timeout(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._synced_event.wait(), max(0.0, timeout))
        except asyncio.TimeoutError:
            pass

    def _manifest_events(self, events) -> None:
        dns = self.dns
        assert dns is not None  # made before the source that calls this
        with heap.collection_paused():  # a load or a reload: a file's objects at once
            dns.sink(events)
        _freeze_heap()

    def _kube_events(self, events) -> None:
        dns = self.dns
        assert dns is not None  # made before the source that calls this
        was_synced = dns.synced
        size = sum(len(e.objects) if isinstance(e, Replace) else 1 for e in events)
        with heap.collection_paused() if size >= BIG_BATCH else contextlib.nullcontext():
            dns.sink(events)
        if size >= BIG_BATCH or (dns.synced and not was_synced):  # a (re)list, or the first sync
            _freeze_heap()
        self._api_back()
        for kind in dns.cluster.synced:
            self.metrics.mark_synced(kind)
        if dns.synced and not was_synced:
            self._synced_event.set()
            if self._started:  # a late first sync, after --startup-timeout
                log.info("synced with the API: %s; misses are answered NXDOMAIN from now on", self._object_summary())

    def _watch_restarted(self, kind: str, reason: str) -> None:  # on a watch thread
        self.metrics.count_watch_restart(kind, reason)
        if reason == "expired":
            self.metrics.count_watch_relist(kind)
        if reason in CONTACT_LOST:
            self._on_loop(self._api_lost)

    def _api_answered(self) -> None:  # on the probe thread
        if self._api_down_since is not None:
            self._on_loop(self._api_down)

    def _on_loop(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the event loop, from a watch or probe thread."""
        loop = self._event_loop
        assert loop is not None  # start() set it before starting the watch
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:
            pass  # the loop is closing: we are shutting down

    def _api_lost(self) -> None:
        if self._api_down_since is None:
            self._api_down_since = time.time()
            log.warning("lost contact with the Kubernetes API: serving the last known state")
            self.metrics.set_api_reachable(False)

    def _api_back(self) -> None:
        if self._api_down_since is not None:
            self._api_down_since = None
            self.metrics.set_api_reachable(True)
            log.info("the Kubernetes API is reachable again")

    def _manifest_error(self, message: str) -> None:
        self.metrics.count_manifest_error()

    # ------------------------------------------------------------------ signals

    def reload(self) -> None:
        """Re-read what this process serves from (SIGHUP, SIGUSR1): every manifest file, changed or
        not, and the hosts files that changed.  A live cluster needs nothing: its watch is current."""
        if self.manifests is not None:
            task = asyncio.create_task(self.manifests.refresh(force=True, stop=self._stop),
                                       name="clusterdns-manifest-reload")
            self._tasks.append(task)
            task.add_done_callback(self._forget_task)
        if self.hosts is not None:
            self.hosts.load()

    def _forget_task(self, task: asyncio.Task) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    def state(self) -> str:
        """One line saying how this server is doing (SIGUSR2)."""
        if self.dns is None:
            return "starting"
        ready, why = self.readiness()
        parts = [
            "ready" if ready else f"not ready ({why})",
            f"zone {self.options.settings.zone} serial {self.dns.zone.serial}: {len(self.dns.zone.names())} names, "
            f"{self.dns.zone.record_count} records",
            self._object_summary() or "no objects",
            f"{len(self.dns.responder.cache)} cached answers",
        ]
        if self.manifests is not None:
            errors = sum(len(m) for m in self.manifests.errors.values())
            missing = ", ".join(display(p) for p in self.manifests.missing) or "none"
            parts.append(f"manifests: {len(self.manifests.files)} files, {errors} errors, "
                         f"{self.manifests.reloads} reloads, missing paths: {missing}")
        if self.kube is not None:
            contact = self.kube.last_contact
            ago = f"{time.time() - contact:.0f}s ago" if contact else "never"
            restarts = sum(self.kube.restarts.values())
            parts.append(f"API: {'unreachable' if self._api_down() else 'reachable'}, last answer {ago}, "
                         f"{restarts} watch restarts")
        return "state: " + "; ".join(parts)

    # ------------------------------------------------------------------ state

    def readiness(self) -> tuple[bool, str]:
        """What /ready reports: synced, and (for a live cluster) the API not gone for too long."""
        if self.dns is None:
            return False, "starting"
        if self.draining:
            return False, "shutting down"
        if not self.dns.synced:
            missing = sorted(self.dns.required_kinds - self.dns.cluster.synced)
            return False, f"waiting for first sync of {', '.join(missing)}"
        if self.manifests is not None and self.manifests.missing:
            path, since = min(self.manifests.missing.items(), key=lambda item: item[1])
            return False, (f"manifest path {display(path)} gone for {time.time() - since:.0f}s: "
                           "serving its last good state")
        if self.kube is not None and self._api_down():
            assert self._api_down_since is not None  # what _api_down() said
            down_for = time.time() - self._api_down_since
            if down_for > self.options.ready_grace:
                return False, f"Kubernetes API unreachable for {down_for:.0f}s (grace {self.options.ready_grace:g}s)"
        return True, ""

    def zone_view(self) -> dict:
        """What GET /zone shows: the zone as DNS sees it (see zoneview.py)."""
        assert self.dns is not None  # the HTTP listeners open after the zone is made
        return zone_json(self.dns)

    def _api_down(self) -> bool:
        if self._api_down_since is None or self.kube is None:  # (only a live cluster's API goes away)
            return False
        if self.kube.last_contact > self._api_down_since:
            self._api_back()  # an answer since it went away: a list, an event, a bookmark or a probe
            return False
        return True

    def _object_summary(self) -> str:
        assert self.dns is not None  # said once the zone is made
        counts = {kind: self.dns.cluster.count(kind) for kind in KINDS}
        return ", ".join(f"{n} {kind if kind.endswith('s') else kind + 's'}" for kind, n in counts.items() if n)

    async def _refresh_gauges(self) -> None:
        while True:
            self.refresh_gauges()
            await asyncio.sleep(GAUGE_REFRESH)

    def _read_gauges_live(self) -> None:
        """The state gauges read this Serving's state when /metrics is scraped."""
        dns = self.dns
        assert dns is not None  # read once start() has made the zone

        def cache_entries(cache_type: str) -> int:
            forwarded = self.forwarder.cache.counts() if self.forwarder is not None else {}
            own = len(dns.responder.cache) if cache_type == "success" else 0
            return own + forwarded.get(cache_type, 0)

        self.metrics.read_live(
            objects=lambda kind: dns.cluster.count(kind),
            records=lambda: dns.zone.record_count,
            serial=lambda: dns.zone.serial,
            cache_entries=cache_entries,
        )

    def refresh_gauges(self) -> None:
        """Housekeeping every few seconds: the forwarder's burst logs, the API-contact check (gauges are read live)."""
        if self.forwarder is not None:
            self.forwarder.flush_logs()
        if self.kube is not None:
            self._api_down()

    # ------------------------------------------------------------------ stop

    async def close(self) -> None:
        """Stop everything this object started; safe to call twice."""
        self._stop.set()
        if self.kube is not None:
            await asyncio.to_thread(self.kube.stop)
        for task in self._tasks:
            if task.get_name() not in STOPPED_BY_EVENT:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for server in self.http_servers:
            await server.close()
        self.http_servers.clear()
        self.http = None
        if self.dns_server is not None:
            await self.dns_server.close()
        if self.forwarder is not None:
            await self.forwarder.close()


def _reason(exc: OSError) -> str:
    """"Address already in use", without the wrapping asyncio adds to a failed bind."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _bind_hint(what: str, port: int, exc: OSError) -> str:
    """What to do about a port that cannot be bound (the quick start's 5353 and 8080 are popular ones)."""
    if what == "DNS":
        fix = "choose another with --listen HOST:PORT"
    else:
        fix = "choose another with --http HOST:PORT, or turn HTTP off with --http ''"
    if exc.errno == errno.EACCES and 0 < port < 1024:
        return f" (ports below 1024 need root or CAP_NET_BIND_SERVICE; {fix})"
    if exc.errno == errno.EADDRINUSE:
        known = {
            5353: "5353 is also the mDNS port (avahi-daemon, systemd-resolved); ",
            8080: "8080 is a common development port; ",
        }
        return f" (another program is using it; {known.get(port, '')}{fix})"
    return f" ({fix})"


def _freeze_heap() -> None:
    """Keep the state just committed out of the garbage collector's full passes.

    A full collection walks every object the process holds; with 10,000 Services
    that stopped all answers for 200-600 ms after a reload.  Collecting now costs
    only what is young (everything older is frozen already); freezing then moves
    the survivors, the new long-lived state, out of later collections' way.
    """
    gc.collect()
    gc.freeze()


def _server_label(listen: list[tuple[str, int]]) -> str:
    host, port = listen[0] if listen else ("", 53)
    return f"dns://{_host_for_url(host)}:{port}"


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
