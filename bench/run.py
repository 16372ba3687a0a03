"""Measure clusterdns's answer path: in-process (respond() per query) and over UDP with dnsperf.

Usage: python bench/run.py [--seconds 10] [--clients 4]
Needs dnsperf for the socket part (Debian/Ubuntu: apt-get install dnsperf);
without it only the in-process numbers are printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dnslib import DNSRecord  # noqa: E402

from clusterdns.app import load_manifests  # noqa: E402
from clusterdns.settings import Settings  # noqa: E402

# What pods ask: hits, and the search-path misses ndots:5 makes before them.
QUERIES = [
    ("kubia.default.svc.cluster.local", "A"),
    ("kubernetes.default.svc.cluster.local", "A"),
    ("kube-dns.kube-system.svc.cluster.local", "A"),
    ("zk-hs.default.svc.cluster.local", "A"),
    ("_server._tcp.zk-hs.default.svc.cluster.local", "SRV"),
    ("my-service.default.svc.cluster.local", "A"),
    ("dual.shop.svc.cluster.local", "AAAA"),
    ("10.0.96.10.in-addr.arpa", "PTR"),
    ("kubia.default.svc.cluster.local.default.svc.cluster.local", "A"),
    ("kubia.default.svc.cluster.local.svc.cluster.local", "A"),
    ("kubia.default.svc.cluster.local.cluster.local", "A"),
    ("kubia.default.svc.cluster.local", "AAAA"),
]


def in_process(seconds: float) -> None:
    dns, _ = load_manifests([ROOT / "zones"], Settings())
    packets = [bytes(DNSRecord.question(n, t).pack()) for n, t in QUERIES]
    count, deadline = 0, time.perf_counter() + seconds / 2
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for p in packets:
            dns.responder.respond(p, udp=True)
        count += len(packets)
    report("cache hits", count, time.perf_counter() - started)
    # Names never asked before (a random-subdomain flood): every one goes through dnslib.
    unique = [bytes(DNSRecord.question(f"x{i}.default.svc.cluster.local", "A").pack()) for i in range(20_000)]
    count, deadline = 0, time.perf_counter() + seconds / 2
    started = time.perf_counter()
    for p in unique:
        dns.responder.respond(p, udp=True)
        count += 1
        if time.perf_counter() > deadline:
            break
    report("unique names", count, time.perf_counter() - started)


def report(label: str, count: int, elapsed: float) -> None:
    print(f"in-process respond(), {label:<12}: {count / elapsed:>10,.0f} queries/s  ({elapsed / count * 1e6:.1f} µs/query)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def over_udp(seconds: float, clients: int) -> None:
    dnsperf = shutil.which("dnsperf")
    if dnsperf is None:
        print("dnsperf not found: install it (apt-get install dnsperf) for the over-the-wire numbers")
        return
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "clusterdns.cli", "serve", "--manifests", str(ROOT / "zones"),
         "--listen", f"127.0.0.1:{port}", "--http", "", "--log-level", "warning", "--no-forward"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        _wait_for_port(port)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.writelines(f"{n} {t}\n" for n, t in QUERIES)
        result = subprocess.run(
            [dnsperf, "-s", "127.0.0.1", "-p", str(port), "-d", f.name, "-l", str(seconds), "-c", str(clients), "-Q", "100000"],
            capture_output=True, text=True, timeout=seconds + 30,
        )
        os.unlink(f.name)
        wanted = ("Queries sent", "Queries completed", "Queries lost", "Response codes", "Queries per second", "Average Latency", "Latency StdDev")
        for line in result.stdout.splitlines():
            if line.strip().startswith(wanted):
                print("dnsperf:", line.strip())
        if result.returncode != 0:
            print(result.stderr)
    finally:
        server.terminate()
        server.wait(10)


def _wait_for_port(port: int) -> None:
    query = bytes(DNSRecord.question("cluster.local", "SOA").pack())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.sendto(query, ("127.0.0.1", port))
                s.recv(512)
                return
            except OSError:
                continue
    raise SystemExit("server did not start")


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    in_process(args.seconds / 2)
    over_udp(args.seconds, args.clients)


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # piped into head
        pass
