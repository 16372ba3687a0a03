"""The ``clusterdns`` command: serve, check, records.

Exit status: 0 success; 1 the input has errors (``check``) or serving failed
at run time; 2 bad command line; 3 a listen address could not be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from dnslib import QTYPE, RR

from . import __version__
from .app import ClusterDNS
from .objects import KINDS
from .server import DnsServer, parse_listen
from .settings import POD_MODES, Settings, absolute
from .sources.manifests import ManifestSource, manifest_files

log = logging.getLogger("clusterdns")

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_BIND = 0, 1, 2, 3
DEFAULT_MANIFESTS = "zones"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clusterdns",
        description="Authoritative DNS for Kubernetes cluster names, fed by manifests or a live cluster.",
        epilog="Exit status: 0 ok, 1 input errors, 2 bad usage, 3 cannot bind a listen address.",
    )
    parser.add_argument("--version", action="version", version=f"clusterdns {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="answer DNS queries for the cluster",
        description="Serve the cluster zone over UDP and TCP. With no --manifests and no cluster, serves ./zones.",
    )
    _add_input_options(serve)
    _add_zone_options(serve)
    serve.add_argument(
        "--listen", action="append", metavar="HOST:PORT",
        help="address to answer on, UDP and TCP; repeatable; [::1]:53 for IPv6 (default 127.0.0.1:5353)",
    )
    serve.add_argument(
        "--http", default="127.0.0.1:8080", metavar="HOST:PORT",
        help="address for /health, /ready and /metrics; '' turns it off (default %(default)s)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    check = commands.add_parser(
        "check", help="validate manifests and summarise what would be served",
        description="Read manifests, report every error with file, document, object and field, and summarise.",
    )
    _add_input_options(check, kube=False)
    _add_zone_options(check)
    check.add_argument("--records", action="store_true", help="also print every record that would be served")

    records = commands.add_parser("records", help="print every record the manifests produce, in zone-file form")
    _add_input_options(records, kube=False)
    _add_zone_options(records)
    return parser


def _add_input_options(parser: argparse.ArgumentParser, kube: bool = True) -> None:
    parser.add_argument(
        "--manifests", nargs="+", metavar="PATH",
        help="YAML/JSON manifest files or directories (reloaded when they change)",
    )
    if kube:
        group = parser.add_argument_group("live cluster")
        group.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
        group.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")


def _add_zone_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("answers")
    group.add_argument("--zone", default="cluster.local", help="cluster domain (default %(default)s)")
    group.add_argument("--ttl", type=int, default=5, help="TTL of every record, and negative TTL (default %(default)s)")
    group.add_argument(
        "--pods", choices=POD_MODES, default="insecure",
        help="pod A records a-b-c-d.NS.pod.ZONE: insecure (any IP), verified (only existing pods), disabled",
    )
    group.add_argument(
        "--endpoint-pod-names", action="store_true",
        help="name headless endpoints without a hostname by their pod name instead of their dashed IP",
    )
    group.add_argument(
        "--ptr-all-endpoints", action="store_true",
        help="PTR for every endpoint IP, not only those with a hostname (CoreDNS's behaviour)",
    )
    group.add_argument(
        "--ignore-empty-service", action="store_true",
        help="NXDOMAIN for a ClusterIP service with no ready endpoints (CoreDNS's ignore empty_service)",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    if not 0 <= args.ttl <= 3600:
        raise ValueError(f"--ttl {args.ttl}: expected 0-3600 seconds")
    return Settings(
        zone=absolute(args.zone),
        ttl=args.ttl,
        pods=args.pods,
        endpoint_pod_names=args.endpoint_pod_names,
        ptr_all_endpoints=args.ptr_all_endpoints,
        ignore_empty_service=args.ignore_empty_service,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.command == "serve":
        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
        )
        try:
            listen = [parse_listen(text) for text in (args.listen or ["127.0.0.1:5353"])]
        except ValueError as exc:
            parser.error(str(exc))
        return asyncio.run(serve(args, settings, listen))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    paths = args.manifests or [DEFAULT_MANIFESTS]
    return check(paths, settings, show_records=args.command == "records" or args.records, summary=args.command == "check")


# ----------------------------------------------------------------------------- check


def load_manifests(paths: list[str], settings: Settings) -> tuple[ClusterDNS, ManifestSource]:
    dns = ClusterDNS.for_manifests(settings)
    source = ManifestSource(paths, dns.sink)
    source.load()
    return dns, source


def check(paths: list[str], settings: Settings, show_records: bool, summary: bool) -> int:
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        print(f"clusterdns: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    dns, source = load_manifests(paths, settings)
    errors = [message for messages in source.errors.values() for message in messages]
    if summary:
        files = manifest_files([Path(p) for p in paths])
        print(f"{len(files)} file(s) read, {len(errors)} error(s)")
        for kind in KINDS:
            print(f"  {kind:<16} {dns.cluster.count(kind)}")
        by_type = Counter(QTYPE.get(t) for name in dns.zone.names() for t, rds in dns.zone.records(name).items() for _ in rds)
        print(f"{len(dns.zone.names())} names, {dns.zone.record_count} records: " + ", ".join(f"{n} {t}" for t, n in sorted(by_type.items())))
    if show_records:
        for line in zone_lines(dns):
            print(line)
    return EXIT_ERRORS if errors else EXIT_OK


def zone_lines(dns: ClusterDNS) -> list[str]:
    """Every stored record in zone-file form, by name."""
    lines = []
    for name in dns.zone.names():
        for qtype, rds in dns.zone.records(name).items():
            lines += [RR(name, qtype, ttl=dns.settings.ttl, rdata=rd).toZone() for rd in rds]
    return lines


# ----------------------------------------------------------------------------- serve


async def serve(args: argparse.Namespace, settings: Settings, listen: list[tuple[str, int]]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    paths = args.manifests
    live = not paths and (args.kubeconfig or args.context or os.environ.get("KUBERNETES_SERVICE_HOST"))
    if live:
        log.error("live clusters are not supported yet; pass --manifests")
        return EXIT_USAGE
    paths = paths or [DEFAULT_MANIFESTS]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        log.error("no such file or directory: %s", ", ".join(missing))
        return EXIT_USAGE

    started = time.monotonic()
    dns = ClusterDNS.for_manifests(settings)
    source = ManifestSource(paths, dns.sink)
    source.load()
    error_count = sum(len(m) for m in source.errors.values())
    log.info(
        "loaded %s in %.2fs: %s; %d names, %d records%s",
        ", ".join(paths), time.monotonic() - started,
        ", ".join(f"{dns.cluster.count(k)} {k}s" for k in KINDS),
        len(dns.zone.names()), dns.zone.record_count,
        f"; {error_count} error(s) above" if error_count else "",
    )

    server = DnsServer(dns.responder)
    try:
        for host, port in listen:
            await server.listen(host, port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s%s", host, port, exc.strerror or exc,
                  " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" if port < 1024 else "")
        await server.close()
        return EXIT_BIND

    watcher = asyncio.create_task(source.watch(stop))
    log.info("serving zone %s; Ctrl-C to stop", settings.zone)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        stop.set()
        await asyncio.wait_for(watcher, 5)
        await server.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
