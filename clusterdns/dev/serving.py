"""``clusterdns dev``: watch every kubeconfig context and answer for all of them on one loopback port.

:class:`DevServing` owns everything it starts (one KubeSource per context,
the DNS listener, the HTTP listener with ``/status``, the port forwards) and
:meth:`DevServing.close` stops it all.  One context whose credentials or API
fail is reported and answers SERVFAIL; the others carry on.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..cluster import Cluster
from ..forward import Forwarder, ForwardSettings, parse_addresses
from ..forward.loop import find_loop
from ..forward.settings import format_address
from ..http import HttpServer, start_http
from ..metrics import Metrics
from ..objects import ENDPOINT_SLICE, NAMESPACE, NODE, POD, SERVICE, Node
from ..server import DnsServer
from ..settings import Settings, absolute
from ..sources import KubeConfigError
from ..sources.watch_options import CONTACT_LOST, WatchOptions
from .context_dns import ContextDNS, View
from .contexts import Context, context_zone, kubeconfig_path, read_contexts
from .portforward import Backend, KubePortForward, PortForwards, pick_backend
from .reach import LoopbackAddresses, ReachPolicy, parse_reach
from .responder import DevResponder
from .upstreams import dev_upstreams

if TYPE_CHECKING:
    from ..sources.kube import KubeSource  # imported when serving starts: it loads the kubernetes client

log = logging.getLogger("clusterdns.dev")

DEFAULT_HTTP = "127.0.0.1:1054"
API_CHECK_INTERVAL = 1.0  # seconds between checks that a lost API is back
# Nodes are watched for NodePort answers but not waited for: many developers may not list nodes.
REQUIRED_KINDS = frozenset({NAMESPACE, SERVICE, ENDPOINT_SLICE})
STATE_FILE = Path("/var/lib/clusterdns/setup.json")
RESOLV_CONF = Path("/etc/resolv.conf")


@dataclass
class DevOptions:
    kubeconfig: str
    listen: tuple[str, int] = ("127.0.0.1", 1053)
    http: tuple[str, int] | None = ("127.0.0.1", 1054)
    contexts: str = "all"
    zone: str = "cluster.local."
    suffix: str = "k8s"
    ttl: int = 5
    reach: list[str] = field(default_factory=list)  # --reach values: MODE or CONTEXT=MODE
    upstreams: list[str] | None = None  # --upstream; None: from the setup record
    forward: bool = True  # False: --no-forward
    pod_names: bool = False
    explain: bool = True
    startup_timeout: float = 5.0
    state_file: Path = STATE_FILE
    resolv_conf: Path = RESOLV_CONF
    watch_inactivity_timeout: float = WatchOptions.inactivity_timeout


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--contexts", default="all", metavar="all|NAME,...",
                        help="the contexts to serve (default %(default)s)")
    parser.add_argument("--listen", default="127.0.0.1:1053", metavar="HOST:PORT",
                        help="loopback address to answer on, UDP and TCP (default %(default)s; never 5353, mDNS)")
    parser.add_argument("--http", default=DEFAULT_HTTP, metavar="HOST:PORT",
                        help="/status (read by `dev status`), /health, /ready and /metrics; '' turns it off "
                        "(default %(default)s)")
    parser.add_argument("--zone", default="cluster.local", help="the current context's cluster domain (default %(default)s)")
    parser.add_argument("--suffix", default="k8s", help="every context also answers under CONTEXT.SUFFIX (default %(default)s)")
    parser.add_argument("--ttl", type=int, default=5, help="TTL of every answer; keep it short, OSes cache (default %(default)s)")
    parser.add_argument(
        "--reach", action="append", default=[], metavar="MODE|CONTEXT=MODE",
        help="how Services answer: clusterip (in-cluster IPs), external (LoadBalancer, externalIPs, NodePort), "
        "forward (a loopback address port-forwarded to a pod) or auto (external where it exists, else forward; "
        "the default); per context with CONTEXT=MODE; a Service's clusterdns.io/reach annotation wins",
    )
    parser.add_argument("--upstream", action="append", metavar="HOST[:PORT]",
                        help="forward other names here (default: the resolvers `dev setup` recorded)")
    parser.add_argument("--no-forward", action="store_true", help="answer REFUSED for names outside the cluster zones")
    parser.add_argument("--pod-names", action="store_true",
                        help="POD-NAME.NS.pod.ZONE and its PTR for every running pod (watches pods)")
    parser.add_argument("--startup-timeout", type=float, default=5.0, metavar="SECONDS",
                        help="wait this long for the contexts' first sync before answering (default %(default)s)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="how much to log on stderr (default info)")


def options_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> DevOptions:
    from ..server import parse_listen
    from .cli import parse_loopback_listen

    listen = parse_loopback_listen(args.listen, parser)
    try:
        http = parse_listen(args.http, "--http") if args.http else None
    except ValueError as exc:
        parser.error(str(exc))
    if not 0 <= args.ttl <= 3600:
        parser.error(f"--ttl {args.ttl}: expected 0-3600 seconds")
    if args.upstream and args.no_forward:
        parser.error("--upstream and --no-forward are exclusive")
    return DevOptions(
        kubeconfig=kubeconfig_path(args.kubeconfig),
        listen=listen,
        http=http,
        contexts=args.contexts,
        zone=absolute(args.zone),
        suffix=args.suffix.strip(".").lower(),
        ttl=args.ttl,
        reach=args.reach,
        upstreams=args.upstream,
        forward=not args.no_forward,
        pod_names=args.pod_names,
        startup_timeout=args.startup_timeout,
    )


def _nodes_of(cluster: Cluster) -> Callable[[], list[Node]]:
    """``cluster.nodes``, typed as the Nodes it holds (for NodePort answers)."""
    return lambda: [node for node in cluster.nodes() if isinstance(node, Node)]


class ForwardingLoop(Exception):
    """An upstream sends our queries back to us; the message names it and what to pass instead."""


class DevServing:
    def __init__(self, options: DevOptions):
        self.options = options
        self.metrics = Metrics(server=f"dns://{options.listen[0]}:{options.listen[1]}")
        self.contexts: list[ContextDNS] = []
        self.sources: dict[str, KubeSource] = {}  # context name → its source
        self.responder: DevResponder | None = None
        self.dns_server: DnsServer | None = None
        self.http: HttpServer | None = None
        self.forwards: PortForwards | None = None
        self.forwarder: Forwarder | None = None
        self.upstreams: list[str] = []
        self.upstreams_from = ""
        self.collisions: list[str] = []
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._forward_lock = asyncio.Lock()  # one listener change at a time

    # ------------------------------------------------------------------ start

    async def start(self) -> None:
        """Read the contexts, start watching them, listen.  Raises KubeConfigError, OSError (bind)."""
        from ..sources.kube import KubeSource, load_client_configuration

        options = self.options
        self._loop = asyncio.get_running_loop()
        contexts, self.collisions = read_contexts(options.kubeconfig, options.contexts)
        for report in self.collisions:
            log.warning("%s", report)
        try:
            default_reach, per_context = parse_reach(options.reach, [c.name for c in contexts])
        except ValueError as exc:
            raise KubeConfigError(str(exc)) from exc
        self._start_forwarder()
        loopbacks = LoopbackAddresses()
        self.forwards = PortForwards(
            KubePortForward(lambda name: load_client_configuration(options.kubeconfig, name)), self._backend_for
        )
        kinds = {*REQUIRED_KINDS, NODE} | ({POD} if options.pod_names else set())
        for context in contexts:
            cluster = Cluster()
            policy = ReachPolicy(context.name, per_context.get(context.name, default_reach), loopbacks, _nodes_of(cluster))
            required = REQUIRED_KINDS | ({POD} if options.pod_names else set())
            dns = ContextDNS(context, policy, frozenset(required), cluster=cluster, on_services=self._services_changed)
            for zone in self._zones_of(context):
                dns.add_zone(self._settings(zone, reverse=context.current))
            self.contexts.append(dns)
            log.info('context "%s"%s: namespace %s, answering under %s', context.name,
                     " (current)" if context.current else "", context.namespace,
                     ", ".join(v.settings.zone.rstrip(".") for v in dns.views))
            source = KubeSource(
                dns.sink, kubeconfig=options.kubeconfig, context=context.name, kinds=kinds,
                options=WatchOptions(inactivity_timeout=options.watch_inactivity_timeout),
                on_restart=functools.partial(self._watch_restarted, dns),
            )
            try:
                source.start()
            except KubeConfigError as exc:
                dns.error = str(exc)
                dns.api_back()  # says why in its SERVFAIL
                log.error('context "%s" is not served (its names answer SERVFAIL): %s', context.name, exc)
                continue
            self.sources[context.name] = source
        self.responder = self._build_responder()
        self.dns_server = DnsServer(self.responder, metrics=self.metrics, zone_label=options.zone,
                                    forwarder=self.forwarder)
        await self.dns_server.listen(*options.listen)
        await self._refuse_a_loop()  # our listener is up: a probe that loops comes back to it
        if options.http is not None:
            self.http = await start_http(*options.http, self.metrics, self.readiness,
                                         documents={"/status": self._status_document})
            log.info("status on http://%s:%d/status (clusterdns dev status)", options.http[0], self.http.port)
        self._tasks.append(asyncio.create_task(self._watch_api(), name="clusterdns-dev-api"))
        await self._wait_for_sync()

    def _start_forwarder(self) -> None:
        """Where other names go: --upstream, else the setup record, else resolv.conf without ourselves."""
        options = self.options
        if not options.forward:
            self.upstreams_from = "--no-forward"
            return
        found, self.upstreams_from = dev_upstreams(options.upstreams, options.state_file, options.resolv_conf,
                                                   options.listen)
        try:
            addresses = tuple(a for text in found for a in parse_addresses(text))
        except ValueError as exc:
            raise KubeConfigError(str(exc)) from exc
        if not addresses:
            log.warning("no upstream resolvers (none in %s): names outside the cluster zones are REFUSED; "
                        "pass --upstream ADDR, or run `clusterdns dev setup --apply`", self.upstreams_from)
            return
        self.upstreams = [format_address(a) for a in addresses]
        self.forwarder = Forwarder(ForwardSettings(upstreams=addresses), self.metrics)

    async def _refuse_a_loop(self) -> None:
        """Ask each upstream a name only we would see again: if it comes back, that upstream forwards to us."""
        if self.forwarder is None:
            return
        problem = await find_loop(self.forwarder)
        if problem:
            raise ForwardingLoop(problem)

    def _zones_of(self, context: Context) -> list[str]:
        zones = [context_zone(context, self.options.suffix)]
        if context.current:
            zones.insert(0, self.options.zone)
        return zones

    def _settings(self, zone: str, reverse: bool) -> Settings:
        return Settings(zone=zone, ttl=self.options.ttl, pod_names=self.options.pod_names,
                        explain=self.options.explain, reverse=reverse, recursion=self.forwarder is not None)

    def _build_responder(self) -> DevResponder:
        routes: list[tuple[str, View]] = []
        current = None
        for dns in self.contexts:
            for view in dns.views:
                routes += [(zone, view) for zone in view.settings.zones]
                if view.settings.zone == self.options.zone:
                    current = (dns, view)
        # The suffix itself: names of no context are NXDOMAIN here, never forwarded.
        suffix_settings = Settings(zone=absolute(self.options.suffix), ttl=self.options.ttl, pods="disabled",
                                   reverse=False, explain=self.options.explain, recursion=self.forwarder is not None)
        from ..app import new_zone

        zone, responder = new_zone(suffix_settings, Cluster())
        served = ", ".join(v.settings.zone.rstrip(".") for d in self.contexts for v in d.views
                           if v.settings.zone.endswith("." + suffix_settings.zone))
        zone.notes["*"] = f"no kubeconfig context answers under this name; served: {served or 'none'}"
        routes.append((suffix_settings.zone, View(suffix_settings, zone, responder)))
        return DevResponder(routes, current[1] if current else None, current[0].context.namespace if current else "default",
                            forwarding=self.forwarder is not None)

    async def _wait_for_sync(self) -> None:
        deadline = time.monotonic() + self.options.startup_timeout
        started = time.monotonic()
        while time.monotonic() < deadline and not all(d.synced for d in self.contexts if not d.error):
            await asyncio.sleep(0.05)
        for dns in self.contexts:
            zones = ", ".join(v.settings.zone.rstrip(".") for v in dns.views)
            if dns.error:
                log.warning('context "%s" (%s): not served', dns.context.name, zones)
            elif dns.synced:
                log.info('context "%s" synced in %.2fs: %d Services under %s', dns.context.name,
                         time.monotonic() - started, dns.cluster.count(SERVICE), zones)
            else:
                waiting = ", ".join(sorted(dns.required_kinds - dns.cluster.synced))
                log.warning('context "%s" (%s): not synced after %gs (waiting for %s); misses answer SERVFAIL '
                            "until it is", dns.context.name, zones, self.options.startup_timeout, waiting)

    # ------------------------------------------------------------------ events

    def _watch_restarted(self, dns: ContextDNS, kind: str, reason: str) -> None:  # on a watch thread
        if reason in CONTACT_LOST:
            assert self._loop is not None  # set by start(), before any source starts
            try:
                self._loop.call_soon_threadsafe(dns.api_lost)
            except RuntimeError:
                pass  # the loop is closing

    async def _watch_api(self) -> None:
        """A lost API is back once it answered after it went: a list, event, bookmark or probe (no change need come)."""
        while True:
            await asyncio.sleep(API_CHECK_INTERVAL)
            for dns in self.contexts:
                source = self.sources.get(dns.context.name)
                if dns.api_down_since is None or source is None:
                    continue
                if source.last_contact > dns.api_down_since:
                    dns.api_back()

    def _services_changed(self, dns: ContextDNS, refs: set[tuple[str, str]]) -> None:
        for ref in refs:
            task = asyncio.ensure_future(self._follow(dns, ref))
            self._tasks.append(task)
            task.add_done_callback(self._tasks.remove)

    async def _follow(self, dns: ContextDNS, ref: tuple[str, str]) -> None:
        """Keep the port-forward listeners of one Service as its answer says."""
        service = dns.cluster.service(ref)
        if service is not None and service.exposure is not None and service.exposure.node_ports:
            # Its answer may be a node's address once the nodes are listed (often just after the
            # Services): wait for them, a bounded while, rather than open a listener for nothing.
            try:
                await asyncio.wait_for(dns.nodes_listed.wait(), self.options.startup_timeout)
            except asyncio.TimeoutError:
                pass  # nodes not listable (RBAC): the answer stays a forward
            service = dns.cluster.service(ref)
        context = dns.context.name
        reach = dns.policy.decide(service, dns.cluster.endpoint_slices(ref)) if service is not None else None
        wanted = {}  # label → (address, pod)
        if reach is not None and reach.mode == "forward":
            wanted[""] = (reach.addresses[0], "")
            wanted.update((p.label, (p.address, p.pod)) for p in reach.pods)
        forwards = self.forwards
        assert forwards is not None  # set by start(), before any source starts
        async with self._forward_lock:
            for key in forwards.keys_of(context, *ref):
                if key[3] not in wanted:
                    await forwards.remove(key)
            if service is not None:  # else nothing is wanted
                for label, (address, pod) in wanted.items():
                    await forwards.ensure(context, service, address, label, pod)

    def _backend_for(self, context: str, namespace: str, name: str, port: int, pod: str) -> Backend | None:
        dns = next((d for d in self.contexts if d.context.name == context), None)
        if dns is None:
            return None
        service = dns.cluster.service((namespace, name))
        if service is None:
            return None
        return pick_backend(service, dns.cluster.endpoint_slices((namespace, name)), port, pod)

    # ------------------------------------------------------------------ state

    def readiness(self) -> tuple[bool, str]:
        waiting = [d.context.name for d in self.contexts if not d.answering]
        return (not waiting, f"not answering for: {', '.join(waiting)}" if waiting else "")

    def status(self) -> dict:
        """What ``clusterdns dev status`` shows."""
        contexts = []
        for dns in self.contexts:
            services = []
            for namespace, name, reach in dns.services():
                entry: dict[str, object] = {"namespace": namespace, "name": name, "reach": reach.mode, "via": reach.via,
                         "addresses": list(reach.addresses), "cname": reach.cname,
                         "node_ports": [list(p) for p in reach.node_ports], "note": reach.note}
                entry["address"] = reach.addresses[0] if reach.addresses else reach.cname
                if reach.pods:
                    entry["pods"] = [{"name": p.label, "pod": p.pod, "address": p.address} for p in reach.pods]
                forwarded = self.forwards.services.get((dns.context.name, namespace, name, "")) if self.forwards else None
                if forwarded is not None:
                    entry["forward"] = {"ports": sorted(forwarded.ports), "connections": forwarded.connections,
                                        "failures": forwarded.failures, "last_error": forwarded.last_error}
                services.append(entry)
            contexts.append({
                "name": dns.context.name, "label": dns.context.label, "current": dns.context.current,
                "namespace": dns.context.namespace, "zones": [v.settings.zone for v in dns.views],
                "synced": dns.synced, "api_reachable": dns.api_down_since is None, "error": dns.error,
                "answering": dns.answering, "services": services,
            })
        return {"listen": "%s:%d" % self.options.listen, "upstreams": self.upstreams,
                "upstreams_from": self.upstreams_from, "collisions": self.collisions, "contexts": contexts}

    def _status_document(self) -> tuple[str, str]:
        return json.dumps(self.status(), indent=2) + "\n", "application/json"

    # ------------------------------------------------------------------ stop

    async def close(self) -> None:
        for source in self.sources.values():
            await asyncio.to_thread(source.stop)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.forwards is not None:
            await self.forwards.close()
        if self.http is not None:
            await self.http.close()
        if self.dns_server is not None:
            await self.dns_server.close()
        if self.forwarder is not None:
            await self.forwarder.close()


def run_server(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..cli import EXIT_BIND, EXIT_LOOP, EXIT_OK, EXIT_USAGE, _loop_factory

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        stream=sys.stderr)
    options = options_from(args, parser)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        serving = DevServing(options)
        try:
            await serving.start()
        except KubeConfigError as exc:
            log.error("%s", exc)
            await serving.close()
            return EXIT_USAGE
        except ForwardingLoop as exc:
            log.error("%s", exc)
            await serving.close()
            return EXIT_LOOP
        except OSError as exc:
            log.error("cannot listen on %s port %d: %s", *options.listen, exc.strerror or exc)
            await serving.close()
            return EXIT_BIND
        forwarding = (f"other names go to {', '.join(serving.upstreams)} (from {serving.upstreams_from})"
                      if serving.forwarder else "other names are REFUSED")
        log.info("answering on %s port %d; %s; Ctrl-C to stop", *options.listen, forwarding)
        try:
            await stop.wait()
        finally:
            log.info("shutting down")
            await serving.close()
        return EXIT_OK

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main())
