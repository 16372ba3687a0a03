"""Zone scale: load N services with M endpoints each, then time single-object updates.

Usage: python bench/scale.py [--services 10000] [--endpoints 15]
Prints load time, resident memory, and the cost of one EndpointSlice update
(which recomputes one service's names, not the zone).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clusterdns.app import ClusterDNS  # noqa: E402
from clusterdns.events import Synced, Upsert  # noqa: E402
from clusterdns.objects import Endpoint, EndpointPort, EndpointSlice, Service, ServicePort  # noqa: E402
from clusterdns.settings import Settings  # noqa: E402


def ip(n: int) -> str:
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def objects(services: int, endpoints: int):
    for s in range(services):
        ns = f"ns{s % 100}"
        headless = s % 2 == 0
        yield Service(ns, f"svc{s}", "ClusterIP", () if headless else (ip(0x600000 + s),), headless,
                      (ServicePort("http", 80, "TCP", 8080),), None)
        yield EndpointSlice(ns, f"svc{s}-abc", f"svc{s}", "IPv4",
                            tuple(Endpoint((ip(s * endpoints + e + 1),), True) for e in range(endpoints)),
                            (EndpointPort("http", 8080, "TCP"),))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=15)
    args = parser.parse_args()
    before = rss_mib()
    dns = ClusterDNS(Settings())
    started = time.perf_counter()
    dns.sink([Upsert(o) for o in objects(args.services, args.endpoints)] + [Synced("Service")])
    load = time.perf_counter() - started
    print(f"{args.services} services, {args.services * args.endpoints} endpoints: loaded in {load:.1f}s, "
          f"{dns.zone.record_count} records, {len(dns.zone.names())} names, max RSS {rss_mib() - before:.0f} MiB above start")
    updates = 500
    started = time.perf_counter()
    for i in range(updates):
        s = (i * 7919) % args.services
        dns.sink([Upsert(EndpointSlice(f"ns{s % 100}", f"svc{s}-abc", f"svc{s}", "IPv4",
                                       tuple(Endpoint((ip(0x800000 + i * args.endpoints + e),), True) for e in range(args.endpoints)),
                                       (EndpointPort("http", 8080, "TCP"),)))])
    per = (time.perf_counter() - started) / updates
    print(f"one EndpointSlice update ({args.endpoints} endpoints): {per * 1e3:.2f} ms")
    cache_under_churn(dns, args)


def cache_under_churn(dns: ClusterDNS, args: argparse.Namespace, names: int = 2000, updates: int = 100) -> None:
    """How many cached answers survive updates to other services."""
    from dnslib import DNSRecord

    queries = [bytes(DNSRecord.question(f"svc{s}.ns{s % 100}.svc.cluster.local", "A").pack()) for s in range(names)]
    for q in queries:
        dns.responder.respond(q, udp=True)
    for i in range(updates):
        s = names + i  # services outside the queried set
        dns.sink([Upsert(EndpointSlice(f"ns{s % 100}", f"svc{s}-abc", f"svc{s}", "IPv4",
                                       (Endpoint((ip(0x900000 + i),), True),), (EndpointPort("http", 8080, "TCP"),)))])
    hits = dns.responder.hits
    for q in queries:
        dns.responder.respond(q, udp=True)
    print(f"after {updates} updates to other services, {dns.responder.hits - hits}/{names} cached answers still served")


if __name__ == "__main__":
    main()
