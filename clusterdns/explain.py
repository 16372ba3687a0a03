"""``clusterdns resolve`` and ``clusterdns resolv-conf``: the search path, walked and explained."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dnslib import QTYPE, RCODE, DNSRecord

from .answer import answer
from .app import ClusterDNS, load_manifests
from .searchpath import ResolvConf, candidates, parse_resolv_conf, pod_resolv_conf
from .settings import Settings

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2


def run(args: argparse.Namespace, paths: list[str], settings: Settings) -> int:
    dns, _ = load_manifests(paths, settings, args.max_manifest_bytes)
    conf = _pod_conf(dns, args.namespace, settings)
    if args.command == "resolv-conf":
        sys.stdout.write(conf.render())
        return EXIT_OK
    if args.resolv_conf:
        conf = parse_resolv_conf(Path(args.resolv_conf).read_text())
    try:
        qtype = QTYPE.reverse[args.type.upper()]
    except KeyError:
        print(f"clusterdns resolve: unknown query type {args.type!r}", file=sys.stderr)
        return EXIT_USAGE
    lines, found = walk(dns, args.name, conf, qtype)
    print("\n".join(lines))
    return EXIT_OK if found else EXIT_NOT_FOUND


def _pod_conf(dns: ClusterDNS, namespace: str, settings: Settings) -> ResolvConf:
    service = dns.cluster.service(settings.dns_service)
    nameserver = service.cluster_ips[0] if service and service.cluster_ips else "10.96.0.10"
    return pod_resolv_conf(namespace, settings.zone, nameserver)


def walk(dns: ClusterDNS, name: str, conf: ResolvConf, qtype: int) -> tuple[list[str], bool]:
    """Lines explaining each try, and whether a try found records (where glibc stops)."""
    dots = name.rstrip(".").count(".")
    if name.endswith("."):
        why = "ends with a dot: asked exactly as written"
    elif dots >= conf.ndots:
        why = f"has {dots} dot(s), at least ndots:{conf.ndots}: tried as written first, then with each search domain"
    else:
        why = f"has {dots} dot(s), fewer than ndots:{conf.ndots}: each search domain first, as written last"
    lines = [f"search {' '.join(conf.search) or '(none)'}; options ndots:{conf.ndots}", f"{name!r} {why}"]
    for number, candidate in enumerate(candidates(name, conf), start=1):
        reply = answer(dns.zone, DNSRecord.question(candidate, QTYPE[qtype]))
        rcode = RCODE[reply.header.rcode]
        data = ", ".join(f"{QTYPE[rr.rtype]} {rr.rdata}" for rr in reply.rr)
        if reply.header.rcode == RCODE.REFUSED:
            outcome = "REFUSED: outside the cluster zones (a pod's resolver would get this from upstream)"
        elif data:
            outcome = f"{rcode}  {data}"
        else:
            outcome = f"{rcode}{' (NODATA)' if rcode == 'NOERROR' else ''}"
        lines.append(f"{number:>3}. {candidate:<55} {outcome}")
        if data:
            lines.append(f"     → the resolver stops here after {number} quer{'y' if number == 1 else 'ies'}")
            return lines, True
    lines.append("     → no candidate answered: the lookup fails")
    return lines, False
