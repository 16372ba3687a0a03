"""The ``clusterdns`` command: serve, check, records, resolve, resolv-conf, env.

Exit status: 0 success; 1 the input has errors (``check``, ``records``);
2 bad command line (or an unusable kubeconfig); 3 a listen address could not be bound;
4 a forwarding loop was detected at start.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import re
import signal
import sys
from dataclasses import replace
from collections import Counter
from pathlib import Path
from typing import TypedDict

from dnslib import QTYPE, RR

from . import __version__
from .dev import cli as dev_cli
from .app import ClusterDNS, load_manifests
from .forward import ForwardSettings, parse_addresses, parse_stub
from .forward.loop import launch_token
from .forward.resolvconf import ResolvConfError, upstreams_from_file
from .forward.settings import POLICIES
from .objects import DNS_POLICIES, KINDS
from .searchpath import RESOLVERS
from .hosts import HostsSettings
from .labels import SelectorError, parse_selector
from .querylog import parse_classes
from . import config as corefile_config
from .server import TcpLimits, parse_listen
from .workers import Workers
from .acl import LOOPBACK, parse_networks
from .reload import CorefileReloader
from .serving import ListenError, ServeOptions, Serving
from .sources import KubeConfigError
from .settings import POD_MODES, Settings, absolute
from .sources.manifests import DEFAULT_MAX_BYTES, manifest_files
from .sources.watch_options import WatchOptions
from .wire import MAX_MESSAGE, MIN_UDP_PAYLOAD
from .zone import to_rdata

log = logging.getLogger("clusterdns")

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_BIND, EXIT_LOOP = 0, 1, 2, 3, 4
# The forwarding flags default to ForwardSettings's own values, so each default is written once.
FORWARD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ForwardSettings)}
DEFAULT_MANIFESTS = "zones"
DEFAULT_LISTEN = "127.0.0.1:5353"
DEFAULT_HTTP = "127.0.0.1:8080"
DEFAULT_RESOLV_CONF = "/etc/resolv.conf"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clusterdns",
        description="Authoritative DNS for Kubernetes cluster names, fed by manifests or a live cluster.",
        epilog="Exit status: 0 ok, 1 input errors, 2 bad usage, 3 cannot bind a listen address, "
        "4 forwarding loop detected.",
    )
    parser.add_argument("--version", action="version", version=f"clusterdns {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="answer DNS queries for the cluster",
        description=(
            "Serve the cluster zone over UDP and TCP, from manifests (hot-reloaded) or a live cluster "
            "(--kube, --kubeconfig, --context, or in-cluster config in a pod). With neither, serves ./zones."
        ),
    )
    kube = _add_input_options(serve)
    _add_zone_options(serve)
    serve.add_argument(
        "--corefile", metavar="PATH",
        help="take every setting from this CoreDNS Corefile (listeners, kubernetes, forward, cache, hosts, "
        "rewrite, health, ready, prometheus...), as CoreDNS would; with --manifests, serve those instead of the API",
    )
    serve.add_argument(
        "--relocate", action="append", metavar="FROM=TO",
        help="with --corefile: move a listener the Corefile names, e.g. :53=127.0.0.1:5353 or :8080=127.0.0.1:8080 "
        "('*=127.0.0.1' moves every host); repeatable",
    )
    serve.add_argument(
        "--listen", action="append", metavar="HOST:PORT",
        help="address to answer on, UDP and TCP; repeatable; [::1]:53 for IPv6 (default 127.0.0.1:5353)",
    )
    serve.add_argument(
        "--http", metavar="HOST:PORT",
        help=f"address for /health, /ready and /metrics; '' turns it off (default {DEFAULT_HTTP}; if that port "
        "is taken, DNS is served without it, with a warning; a port given here must be free)",
    )
    serve.add_argument(
        "--autopath", action="store_true",
        help="do a pod's search walk server-side (CoreDNS autopath): a query for NAME.NS.svc.ZONE from a known pod "
        "gets a CNAME to the first of its search-path names that exists; needs --pods verified",
    )
    serve.add_argument(
        "--transfer-to", default=",".join(LOOPBACK), metavar="CIDR[,CIDR]",
        help="clients allowed to AXFR/IXFR the served zones over TCP; '' allows none (default: loopback only)",
    )
    serve.add_argument(
        "--http-debug-from", default="", metavar="CIDR[,CIDR]",
        help="clients besides loopback allowed GET /zone on the HTTP listener (the zone as JSON)",
    )
    serve.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="processes answering on the same DNS ports (SO_REUSEPORT), one per core, each with its own copy of "
        "the zone from its own source; HTTP and its metrics are the first process's (default: $CLUSTERDNS_WORKERS, "
        "which deploy/ sets from the container's CPU, else 1)",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set for the extra workers
    serve.add_argument(
        "--lameduck", type=float, default=ServeOptions.lameduck, metavar="SECONDS",
        help="on SIGTERM, report /ready 503 but keep answering this long before exiting, so clients are moved "
        "away first (CoreDNS's health lameduck; deploy/ uses 5); a second signal exits at once (default %(default)s)",
    )
    serve.add_argument(
        "--hosts", action="append", metavar="FILE",
        help="answer A, AAAA and PTR from this /etc/hosts-style file before the cluster zone (TTL 3600, "
        "reloaded when it changes; names it lacks fall through); repeatable",
    )
    serve.add_argument(
        "--loadbalance", action=argparse.BooleanOptionalAction, default=True,
        help="rotate the order of A and AAAA records between responses, so clients of a headless service "
        "spread over its pods (CoreDNS's loadbalance, in kubeadm's Corefile; default on)",
    )
    serve.add_argument(
        "--log-queries", nargs="?", const="all", metavar="CLASS,...",
        help="print one line per query on stdout in CoreDNS's log format; optionally only responses of these "
        "classes: success, denial (NXDOMAIN/NODATA), error, all (CoreDNS's log { class ... }; default all)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                       help="how much to log on stderr (default info)")
    abuse = serve.add_argument_group("abuse limits")
    abuse.add_argument(
        "--max-udp-size", type=int, default=1232, metavar="BYTES",
        help="the EDNS payload size advertised (to clients and upstreams), and the largest UDP response sent, "
        "forwarded ones too, whatever a client asks: "
        "larger answers get TC and are retried over TCP (DNS Flag Day 2020, as CoreDNS; 512-65535; default %(default)s)",
    )
    abuse.add_argument(
        "--drop-low-source-ports", action="store_true",
        help="drop UDP queries from source ports below 1024 other than 53, such as echo (7) and chargen (19), "
        "which would answer our answers in a loop (port 0 is always dropped)",
    )
    abuse.add_argument(
        "--max-tcp-connections", type=int, default=1000, metavar="N",
        help="TCP connections open at once; at the limit a new one closes the one idle longest (default %(default)s)",
    )
    abuse.add_argument(
        "--tcp-idle-timeout", type=float, default=10.0, metavar="SECONDS",
        help="close a TCP connection this long without a whole query (default %(default)s)",
    )
    _add_forward_options(serve)
    kube.add_argument("--kube", action="store_true", help="watch the cluster of the current kubeconfig context")
    kube.add_argument("--namespaces", metavar="A,B", help="serve only these namespaces (CoreDNS's namespaces option)")
    kube.add_argument("--labels", metavar="SELECTOR", help="serve only services and endpoints matching this label selector")
    kube.add_argument("--namespace-labels", metavar="SELECTOR", help="serve only namespaces matching this label selector")
    kube.add_argument(
        "--startup-timeout", type=float, default=ServeOptions.startup_timeout, metavar="SECONDS",
        help="wait this long for the first sync before serving what is known (default %(default)s)",
    )
    kube.add_argument(
        "--watch-inactivity-timeout", type=float, default=WatchOptions.inactivity_timeout, metavar="SECONDS",
        help="when a watch has sent nothing for this long, ask the API server a cheap question (a limit=1 list): "
        "an answer means the watch is just quiet, none means the API is hung and counts as lost contact "
        "(default %(default)s)",
    )
    kube.add_argument(
        "--ready-grace", type=float, default=ServeOptions.ready_grace, metavar="SECONDS",
        help="keep /ready true this long after the API went away or stopped answering, serving the last known "
        "state (default %(default)s)",
    )

    check = commands.add_parser(
        "check", help="validate manifests and summarise what would be served",
        description="Read manifests, report every error with file, document, object and field, and summarise.",
    )
    _add_input_options(check, kube=False)
    _add_zone_options(check)
    check.add_argument(
        "--corefile", metavar="PATH",
        help="check this CoreDNS Corefile instead: print the settings it gives, or every error (file:line)",
    )
    check.add_argument("--records", action="store_true", help="also print every record that would be served")

    records = commands.add_parser(
        "records", help="print every record the manifests produce, in zone-file form",
        description="Print every record the manifests produce, one per line in zone-file form (owner, TTL, class, "
        "type, data), as served; errors in the manifests go to stderr and the status is 1.",
    )
    _add_input_options(records, kube=False)
    _add_zone_options(records)

    resolve = commands.add_parser(
        "resolve", help="walk a pod's search path for NAME: each name tried, its answer and why",
        description=(
            "Model the stub resolver a pod runs (glibc or musl) looking up NAME: each name of the search path in "
            "order, with its rcode, answers and the reason for a miss, and which one answered. Answers come from "
            "the manifests (default ./zones), a running server (--server) or a live cluster (--kubeconfig, "
            "--context). Exit status 0 when a name answered, 1 when none did."
        ),
    )
    resolve.add_argument("name", help="the name as a program in the pod would look it up, e.g. kubia or kubia.default")
    resolve.add_argument(
        "qtype", nargs="?", metavar="TYPE",
        help="a record type for res_search (SRV, TXT, ...); without it, an address lookup (A and AAAA, as getaddrinfo)",
    )
    resolve.add_argument("-t", "--type", help=argparse.SUPPRESS)  # the older spelling of TYPE
    resolve.add_argument("-n", "--namespace", default="default", help="the pod's namespace (default %(default)s)")
    resolve.add_argument(
        "--resolver", choices=RESOLVERS, default="glibc",
        help="the pod's C library: glibc (default), musl, or musl-old (before 1.2.4: no TCP retry of truncated answers)",
    )
    resolve.add_argument(
        "--resolv-conf", metavar="FILE",
        help="the pod's resolv.conf (search, ndots, attempts, timeout, single-request[-reopen], use-vc, edns0, no-aaaa); "
        "default: what kubelet writes for a ClusterFirst pod in --namespace",
    )
    resolve.add_argument(
        "--server", metavar="HOST:PORT", help="ask this running clusterdns over the network instead of reading data",
    )
    resolve.add_argument("--json", action="store_true", help="print the walk as JSON")
    _add_data_options(resolve)
    _add_zone_options(resolve)

    resolv_conf = commands.add_parser(
        "resolv-conf", help="print the resolv.conf kubelet writes for a pod",
        description=(
            "What kubelet writes into a pod's /etc/resolv.conf (pkg/kubelet/network/dns): the search list with the "
            "node's domains appended, dnsConfig merged in, kubelet's limits (32 search domains, 2048 characters, "
            "3 nameservers); the nameserver is the kube-dns Service's cluster IP in the data. Warnings kubelet "
            "would raise as events go to stderr."
        ),
    )
    resolv_conf.add_argument("-n", "--namespace", default="default", help="the pod's namespace (default %(default)s)")
    resolv_conf.add_argument("--pod", metavar="NS/NAME", help="use this pod's namespace, dnsPolicy, dnsConfig and hostNetwork")
    resolv_conf.add_argument(
        "--dns-policy", choices=DNS_POLICIES, help="the pod's dnsPolicy (default ClusterFirst, or the pod's own)",
    )
    resolv_conf.add_argument("--dns-config", metavar="FILE", help="a pod dnsConfig (nameservers, searches, options) as YAML or JSON")
    resolv_conf.add_argument(
        "--host-resolv-conf", metavar="FILE",
        help="the node's resolv.conf (kubelet's --resolv-conf); default none, as kubelet with --resolv-conf=''",
    )
    resolv_conf.add_argument(
        "--cluster-dns", metavar="IP[,IP]", help="kubelet's --cluster-dns (default: the kube-dns Service's cluster IP)",
    )
    _add_data_options(resolv_conf)
    resolv_conf.add_argument("--zone", default="cluster.local", help="cluster domain (default %(default)s)")

    env = commands.add_parser(
        "env", help="print the service environment variables kubelet gives a pod",
        description=(
            "The X_SERVICE_HOST, X_SERVICE_PORT, X_PORT... variables kubelet injects into a pod's containers "
            "(pkg/kubelet/envvars): one set per Service with a cluster IP in the pod's namespace, plus the "
            "kubernetes Service of default; none of the namespace's with enableServiceLinks: false."
        ),
    )
    env.add_argument("-n", "--namespace", default="default", help="the pod's namespace (default %(default)s)")
    env.add_argument("--pod", metavar="NS/NAME", help="use this pod's namespace and enableServiceLinks")
    _add_data_options(env)
    dev_cli.add_parser(commands)
    return parser


def _add_forward_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "forwarding", "Names outside the cluster zones (and reverse names the cluster does not own) go upstream, "
        "through a TTL cache. Cluster names never do.",
    )
    group.add_argument(
        "--upstream", metavar="ADDR[:PORT][,ADDR...]|FILE",
        help=f"resolvers to forward to, or a resolv.conf to take them from (its first 3 nameservers, as glibc; "
        f"a loopback stub such as 127.0.0.53 is replaced by /run/systemd/resolve/resolv.conf, as kubelet does) "
        f"(default {DEFAULT_RESOLV_CONF})",
    )
    group.add_argument(
        "--stub", action="append", default=[], metavar="ZONE=ADDR[,ADDR]",
        help="send names at or under ZONE to these resolvers instead (kube-dns stubDomains); repeatable, "
        "the most specific zone wins",
    )
    group.add_argument("--no-forward", action="store_true", help="answer REFUSED to names outside the cluster zones")
    group.add_argument(
        "--upstream-policy", choices=POLICIES, default=FORWARD_DEFAULTS["policy"],
        help="order in which upstreams are tried (default %(default)s)",
    )
    group.add_argument(
        "--max-concurrent", type=int, default=FORWARD_DEFAULTS["max_concurrent"], metavar="N",
        help="forwarded queries in flight before new ones get REFUSED at once (default %(default)s)",
    )
    group.add_argument(
        "--cache-size", type=int, default=FORWARD_DEFAULTS["cache_size"], metavar="N",
        help="forwarded answers cached, N successes and N denials (default %(default)s)",
    )
    group.add_argument(
        "--cache-max-ttl", type=int, default=FORWARD_DEFAULTS["cache_max_ttl"], metavar="SECONDS",
        help="cache a forwarded answer at most this long (default %(default)s)",
    )
    group.add_argument(
        "--cache-max-denial-ttl", type=int, default=FORWARD_DEFAULTS["denial_max_ttl"], metavar="SECONDS",
        help="cache NXDOMAIN/NODATA at most this long; otherwise per the SOA minimum (default %(default)s)",
    )
    group.add_argument(
        "--serve-stale", nargs="?", const="1h", metavar="DURATION",
        help="when every upstream fails, answer from an expired cache entry (TTL 0) up to DURATION after it "
        "expired, e.g. 30m or 1h (default: off; 1h when given without a value)",
    )


def parse_duration(text: str, flag: str) -> float:
    """``90``, ``90s``, ``30m``, ``1h`` → seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if not match:
        raise ValueError(f"{flag} {text!r}: expected a duration such as 90s, 30m or 1h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def forward_settings_from(args: argparse.Namespace) -> ForwardSettings | None:
    """The forwarding options of ``serve`` as one value (None: --no-forward); ValueError on bad ones."""
    if args.no_forward:
        if args.upstream or args.stub:
            raise ValueError("--no-forward excludes --upstream and --stub")
        return None
    for flag, value, low in (
        ("--max-concurrent", args.max_concurrent, 1), ("--cache-size", args.cache_size, 1),
        ("--cache-max-ttl", args.cache_max_ttl, 0), ("--cache-max-denial-ttl", args.cache_max_denial_ttl, 0),
    ):
        if value < low:
            raise ValueError(f"{flag} {value}: expected {low} or more")
    stubs = tuple(parse_stub(text) for text in args.stub)
    zone = absolute(args.zone)
    for stub in stubs:
        if stub.zone == zone or stub.zone.endswith("." + zone) or zone.endswith("." + stub.zone):
            raise ValueError(f"--stub {stub.zone}: overlaps the cluster zone {zone}, whose names never go upstream")
    text = args.upstream or DEFAULT_RESOLV_CONF
    if args.upstream is None and not Path(text).is_file():
        upstreams: tuple = ()
        log.warning("no %s: names outside the cluster are REFUSED unless a --stub covers them; pass --upstream", text)
    elif "/" in text or Path(text).is_file():
        upstreams = upstreams_from_file(text)
    else:
        upstreams = parse_addresses(text)
    if not upstreams and not stubs:
        return None
    return ForwardSettings(
        upstreams=upstreams,
        stubs=stubs,
        policy=args.upstream_policy,
        max_concurrent=args.max_concurrent,
        cache_size=args.cache_size,
        cache_max_ttl=args.cache_max_ttl,
        denial_max_ttl=args.cache_max_denial_ttl,
        serve_stale=parse_duration(args.serve_stale, "--serve-stale") if args.serve_stale else 0.0,
        payload=args.max_udp_size,  # forwarded answers are capped for clients as ours are
    )


def _add_input_options(parser: argparse.ArgumentParser, kube: bool = True):
    parser.add_argument(
        "--manifests", nargs="+", metavar="PATH",
        help="YAML/JSON manifest files or directories" + (" (reloaded when they change)" if kube else " (default: zones)"),
    )
    parser.add_argument(
        "--max-manifest-bytes", type=_byte_size, default=DEFAULT_MAX_BYTES, metavar="SIZE",
        help="skip manifest files larger than this, unread, with an error (e.g. 1048576, 512K, 64M; default 64M)",
    )
    if kube:
        group = parser.add_argument_group("live cluster")
        group.add_argument("--kubeconfig", metavar="PATH", help="watch the cluster of this kubeconfig file")
        group.add_argument(
            "--context", metavar="NAME",
            help="kubeconfig context (default: the current one; the file from $KUBECONFIG or ~/.kube/config)",
        )
        return group
    return None


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    """Manifests (default ./zones) or a live cluster synced once."""
    parser.add_argument("--manifests", nargs="+", metavar="PATH", help="YAML/JSON manifest files or directories (default: zones)")
    group = parser.add_argument_group("live cluster (list once, then answer)")
    group.add_argument("--kubeconfig", metavar="PATH", help="read the cluster of this kubeconfig file")
    group.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")
    group.add_argument(
        "--sync-timeout", type=float, default=10.0, metavar="SECONDS",
        help="wait this long for the first list of every kind (default %(default)s)",
    )


def _add_zone_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("answers")
    group.add_argument("--zone", default="cluster.local", help="cluster domain (default %(default)s)")
    group.add_argument("--ttl", type=int, default=5, help="TTL of every record, and negative TTL (default %(default)s)")
    group.add_argument(
        "--pods", choices=POD_MODES, default="insecure",
        help="pod A records a-b-c-d.NS.pod.ZONE: insecure (any IP), verified (only existing pods), disabled",
    )
    group.add_argument(
        "--pod-names", action="store_true",
        help="POD-NAME.NS.pod.ZONE for every running pod, and a PTR from its IP to that name "
        "(reveals every pod's name to anyone who can query; a live cluster then watches pods)",
    )
    group.add_argument(
        "--endpoint-pod-names", action="store_true",
        help="name endpoints without a hostname by their pod name instead of their dashed IP",
    )
    group.add_argument(
        "--ptr-hostnamed-only", action="store_true",
        help="PTR only for endpoints with a hostname, as the spec says (default: every ready endpoint, as CoreDNS)",
    )
    group.add_argument(
        "--no-explain", action="store_true",
        help="leave out the Extended DNS Error (RFC 8914) that says in words why a name did not resolve",
    )
    group.add_argument(
        "--ignore-empty-service", action="store_true",
        help="NXDOMAIN for a ClusterIP service with no ready endpoints (CoreDNS's ignore empty_service)",
    )


def _byte_size(text: str) -> int:
    """``1048576``, ``512K``, ``64M``, ``1G`` (powers of 1024; ``KiB``/``MiB``/``GiB`` also accepted)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    number = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = number[-1:] if number[-1:] in units else ""
    try:
        value = int(number[: len(number) - len(unit)]) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 1048576, 512K or 64M, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a size above 0, got {text!r}")
    return value


class _SettingsGiven(TypedDict, total=False):
    """Settings that keep their defaults unless their option was given."""

    autopath: bool
    max_udp_size: int


def settings_from(args: argparse.Namespace) -> Settings:
    """The answer settings; commands without the answer options (resolv-conf, env) get the defaults."""
    if not hasattr(args, "ttl"):
        return Settings(zone=absolute(getattr(args, "zone", "cluster.local")))
    if not 0 <= args.ttl <= 3600:
        raise ValueError(f"--ttl {args.ttl}: expected 0-3600 seconds")
    extra: _SettingsGiven = {}
    if getattr(args, "autopath", False):
        if args.pods != "verified":
            raise ValueError("--autopath needs --pods verified: the server finds the asking pod by its address among known pods")
        extra["autopath"] = True
    if getattr(args, "max_udp_size", None) is not None:
        if not MIN_UDP_PAYLOAD <= args.max_udp_size <= MAX_MESSAGE:
            raise ValueError(f"--max-udp-size {args.max_udp_size}: expected {MIN_UDP_PAYLOAD}-{MAX_MESSAGE} bytes")
        extra["max_udp_size"] = args.max_udp_size
    return Settings(
        zone=absolute(args.zone),
        ttl=args.ttl,
        pods=args.pods,
        endpoint_pod_names=args.endpoint_pod_names,
        ptr_hostnamed_only=args.ptr_hostnamed_only,
        ignore_empty_service=args.ignore_empty_service,
        pod_names=args.pod_names,
        explain=not args.no_explain,
        **extra,
    )


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of one sub-command (argparse keeps it on the sub-parsers action)."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[command]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command_parser = _command_parser(parser, args.command)  # for errors in its usage
    if args.command == "dev":
        return dev_cli.run(args, command_parser)
    try:
        settings = settings_from(args)
    except ValueError as exc:
        command_parser.error(str(exc))
    if args.command == "serve":
        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
        )
        corefile = None
        if args.corefile:
            corefile = corefile_options(args, command_parser)
            if corefile is None:
                return EXIT_USAGE
            options = corefile[0]
        else:
            options = serve_options(args, settings, command_parser)
        launch_token(fresh=not args.reuse_port)  # before the workers start: they inherit it (loop probes)
        extra = Workers(args.workers - 1, sys.argv[1:] if argv is None else argv) if args.workers > 1 else None
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                return runner.run(serve(options, corefile[1:] if corefile else None))
        finally:
            if extra is not None:
                extra.stop(options.lameduck + 10)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    if args.command == "check" and args.corefile:
        ignored = flags_beside_corefile(args, command_parser, frozenset({"corefile", "help"}))
        if ignored:
            command_parser.error(f"{', '.join(ignored)}: not used with --corefile, which checks the Corefile only")
        return check_corefile(args.corefile)
    if args.command in ("resolve", "resolv-conf", "env"):
        from . import explain  # dnspython and the stub resolver: ~5 MB and 0.3 s a server never uses

        return explain.run(args, settings)
    paths = args.manifests or [DEFAULT_MANIFESTS]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        print(f"clusterdns: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return check(paths, settings, show_records=args.command == "records" or args.records,
                     summary=args.command == "check", max_bytes=args.max_manifest_bytes)
    except BrokenPipeError:  # `clusterdns records | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _loop_factory():
    """uvloop when installed (UDP is read with plain recvfrom/sendto on either loop: docs/usage.md)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


# ----------------------------------------------------------------------------- check


def check(paths: list[str], settings: Settings, show_records: bool, summary: bool,
          max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    dns, source = load_manifests(paths, settings, max_bytes)
    errors = [message for messages in source.errors.values() for message in messages]
    if summary:
        files = manifest_files([Path(p) for p in paths])
        print(f"{len(files)} file(s) read, {len(errors)} error(s)")
        for kind in KINDS:
            print(f"  {kind:<16} {dns.cluster.count(kind)}")
        by_type = Counter(QTYPE.get(t) for name in dns.zone.names() for t, rds in (dns.zone.records(name) or {}).items() for _ in rds)
        print(f"{len(dns.zone.names())} names, {dns.zone.record_count} records: " + ", ".join(f"{n} {t}" for t, n in sorted(by_type.items())))
    if show_records:
        for line in zone_lines(dns):
            print(line)
    return EXIT_ERRORS if errors else EXIT_OK


def zone_lines(dns: ClusterDNS) -> list[str]:
    """Every stored record in zone-file form, by name."""
    lines = []
    for name in dns.zone.names():
        for qtype, rds in (dns.zone.records(name) or {}).items():
            lines += [RR(name, qtype, ttl=dns.settings.ttl, rdata=to_rdata(qtype, rd)).toZone() for rd in rds]
    return lines


def check_corefile(path: str) -> int:
    """``check --corefile``: the settings a Corefile gives, or every error in it."""
    try:
        config = corefile_config.load(path)
    except corefile_config.ConfigErrors as exc:
        for error in exc.errors:
            print(error)
        print(f"{len(exc.errors)} error(s) in {path}")
        return EXIT_ERRORS
    print(f"{path}: OK ({len(config.files)} file(s) read)")
    for line in corefile_config.describe(config):
        print(line)
    return EXIT_OK


# ----------------------------------------------------------------------------- serve


def _workers(given: int | None, parser: argparse.ArgumentParser) -> int:
    """--workers, else $CLUSTERDNS_WORKERS (a Deployment's resourceFieldRef of its CPU), else 1."""
    if given is None:
        text = os.environ.get("CLUSTERDNS_WORKERS", "").strip()
        if not text:
            return 1
        if not text.isdigit():
            parser.error(f"CLUSTERDNS_WORKERS={text!r}: expected a whole number of worker processes")
        given = int(text)
    if given < 1:
        parser.error(f"--workers {given}: expected at least 1")
    return given


# The serve flags that still mean something beside --corefile; every other one would be silently ignored.
COREFILE_FLAGS = frozenset({"corefile", "relocate", "manifests", "workers", "log_level", "reuse_port", "help"})


def flags_beside_corefile(args: argparse.Namespace, parser: argparse.ArgumentParser,
                          allowed: frozenset[str] = COREFILE_FLAGS) -> list[str]:
    """The flags given with --corefile that it would ignore (the Corefile sets them)."""
    if getattr(args, "reuse_port", False):
        allowed = allowed | {"http"}  # an extra worker gets --http ''
    return [action.option_strings[0] for action in parser._actions
            if action.option_strings and action.dest not in allowed
            and getattr(args, action.dest, action.default) != action.default]


def corefile_options(args: argparse.Namespace, parser: argparse.ArgumentParser):
    """``serve --corefile``: (ServeOptions, Config, prepare) from the Corefile; None (errors logged) if it has errors.

    ``prepare`` turns a Config into ServeOptions with the command line's
    ``--relocate`` and ``--manifests`` applied; a reload uses it again.
    """
    ignored = flags_beside_corefile(args, parser)
    if ignored:
        parser.error(f"{', '.join(ignored)}: not used with --corefile, which sets every serve option; "
                     "edit the Corefile, or move its listeners with --relocate")
    args.workers = _workers(args.workers, parser)
    moves = {}
    for text in args.relocate or ():
        source, sep, target = text.partition("=")
        if not sep:
            parser.error(f"--relocate {text!r}: expected FROM=TO, e.g. :53=127.0.0.1:5353")
        moves[source] = target

    def prepare(config: corefile_config.Config) -> ServeOptions:
        for note in config.notes:
            log.info("%s", note)
        options = corefile_config.serve_options(config)
        options = corefile_config.relocate(options, moves) if moves else options
        if args.manifests:
            options = replace(options, manifests=args.manifests, kubeconfig=None, context=None, kube_endpoint=None)
        options = replace(options, corefile=args.corefile, reuse_port=args.reuse_port or args.workers > 1)
        if args.reuse_port:  # an extra worker (workers.py): DNS only, HTTP is the first process's
            options = replace(options, http=None, http_listeners=())
        return options

    try:
        config = corefile_config.load(args.corefile)
        options = prepare(config)
    except corefile_config.ConfigErrors as exc:
        for error in exc.errors:
            log.error("%s", error)
        log.error("%s: %d error(s); nothing started (clusterdns check --corefile %s lists them)",
                  args.corefile, len(exc.errors), args.corefile)
        return None
    return options, config, prepare



def serve_options(args: argparse.Namespace, settings: Settings, parser: argparse.ArgumentParser) -> ServeOptions:
    args.workers = _workers(args.workers, parser)
    try:
        listen = [parse_listen(text) for text in (args.listen or [DEFAULT_LISTEN])]
        http_text = DEFAULT_HTTP if args.http is None else args.http
        http = parse_listen(http_text, "--http") if http_text else None
        transfer_to = parse_networks(args.transfer_to, "--transfer-to")
        debug_from = parse_networks(args.http_debug_from, "--http-debug-from")
    except ValueError as exc:
        parser.error(str(exc))
    if args.workers > 1 and any(port == 0 for _, port in listen):
        parser.error("--workers needs fixed ports in --listen (port 0 would give each worker a different one)")
    if args.max_tcp_connections < 1:
        parser.error(f"--max-tcp-connections {args.max_tcp_connections}: expected at least 1")
    if args.tcp_idle_timeout <= 0:
        parser.error(f"--tcp-idle-timeout {args.tcp_idle_timeout:g}: expected more than 0 seconds")
    for flag, text in (("--labels", args.labels), ("--namespace-labels", args.namespace_labels)):
        if text:
            try:
                parse_selector(text)
            except SelectorError as exc:
                parser.error(f"{flag}: {exc}")
    live = bool(args.kube or args.kubeconfig or args.context or (not args.manifests and os.environ.get("KUBERNETES_SERVICE_HOST")))
    if live and args.manifests:
        parser.error("--manifests and a live cluster (--kube, --kubeconfig, --context) are exclusive")
    if not live:
        filters = [f for f, v in (("--namespaces", args.namespaces), ("--labels", args.labels),
                                  ("--namespace-labels", args.namespace_labels)) if v]
        if filters:
            parser.error(f"{', '.join(filters)} filter what a live cluster sends; with manifests, edit the manifests")
    manifests = None if live else (args.manifests or [DEFAULT_MANIFESTS])
    if manifests:
        missing = [p for p in manifests if not Path(p).exists()]
        if missing:
            parser.error(f"no such file or directory: {', '.join(missing)}")
    namespaces = frozenset(n.strip() for n in args.namespaces.split(",") if n.strip()) if args.namespaces else None
    log_queries = None
    if args.log_queries is not None:
        try:
            log_queries = parse_classes(args.log_queries)
        except ValueError as exc:
            parser.error(f"--log-queries: {exc}")
    for path in args.hosts or ():
        if not Path(path).is_file():
            parser.error(f"--hosts {path}: no such file")
    try:
        forward = forward_settings_from(args)
    except (ValueError, ResolvConfError) as exc:
        parser.error(str(exc))
    return ServeOptions(
        settings=settings,
        listen=listen,
        http=http,
        manifests=manifests,
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespaces=namespaces,
        labels=args.labels,
        namespace_labels=args.namespace_labels,
        startup_timeout=args.startup_timeout,
        watch=WatchOptions(inactivity_timeout=args.watch_inactivity_timeout),
        ready_grace=args.ready_grace,
        lameduck=args.lameduck,
        reuse_port=args.reuse_port or args.workers > 1,
        max_manifest_bytes=args.max_manifest_bytes,
        http_required=args.http is not None,
        drop_low_source_ports=args.drop_low_source_ports,
        tcp_limits=TcpLimits(max_connections=args.max_tcp_connections, idle_timeout=args.tcp_idle_timeout),
        hosts=HostsSettings(files=tuple(args.hosts)) if args.hosts else None,
        loadbalance=args.loadbalance,
        log_queries=log_queries,
        transfer_to=transfer_to,
        http_debug_from=debug_from,
        forward=forward,
    )


async def serve(options: ServeOptions, corefile=None) -> int:
    """Run until SIGINT/SIGTERM.  ``corefile``: (Config, prepare) to reload the Corefile from.

    SIGHUP and SIGUSR1 reload (the manifests, and the Corefile at once); SIGUSR2 logs the state.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def current() -> Serving:
        return reloader.serving if reloader is not None else serving

    def reload(signame: str) -> None:
        """SIGHUP and SIGUSR1: re-read the manifests (and hosts files), and check the Corefile."""
        log.info("%s: reloading%s", signame, " (Corefile too)" if reloader is not None else "")
        current().reload()
        if reloader is not None:
            reloader.force()

    # Registered before start-up, so that no signal sent during a long first load kills the process.
    for sig in (signal.SIGHUP, signal.SIGUSR1):
        loop.add_signal_handler(sig, reload, sig.name)
    loop.add_signal_handler(signal.SIGUSR2, lambda: log.info("SIGUSR2: %s", current().state()))
    if options.log_queries and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # each query's line out at once, into a pipe too
    serving = Serving(options)
    reloader = reloading = None
    try:
        await serving.start()
    except ListenError as exc:
        log.error("%s", exc)
        return EXIT_BIND
    except KubeConfigError as exc:
        log.error("%s", exc)
        await serving.close()
        return EXIT_USAGE
    if corefile is not None:
        reloader = CorefileReloader(serving, *corefile)
        reloading = asyncio.create_task(reloader.run(stop), name="clusterdns-corefile-reload")
    forwarding = (
        "forwarding the rest to " + ", ".join(u.label for u in serving.forwarder.upstreams)
        if serving.forwarder else "other names REFUSED (no forwarding)"
    )
    log.info("serving zone %s; %s; Ctrl-C to stop", options.settings.zone, forwarding)
    try:
        failed = asyncio.ensure_future(serving.failed.wait())  # a forwarding loop found at start
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait((failed, stopped), return_when=asyncio.FIRST_COMPLETED)
        failed.cancel()
        stopped.cancel()
        if serving.failed.is_set():
            stop.set()  # ends the reloader too
        if reloader is not None and reloading is not None:
            await reloading  # a reload under way finishes first
            serving = reloader.serving
        if serving.failed.is_set():
            return EXIT_LOOP
        lameduck = serving.options.lameduck
        if lameduck > 0:
            stop.clear()
            serving.draining = True
            log.info("lame duck: /ready reports 503, still answering for %gs", lameduck)
            try:
                await asyncio.wait_for(stop.wait(), lameduck)  # a second signal cuts it short
            except asyncio.TimeoutError:
                pass
    finally:
        log.info("shutting down")
        if reloader is not None and reloading is not None:
            reloading.cancel()
            await asyncio.gather(reloading, return_exceptions=True)
            serving = reloader.serving
        await serving.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
