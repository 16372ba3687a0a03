"""How long a manifest reload stops answers: a 10,000-Service file edited under a running server.

Usage: python bench/reload_stall.py [--services 10000] [--reloads 3] [--checkout PATH]

Starts ``clusterdns serve`` (a real process, loopback only, no forwarding) on one
file of ``--services`` Services, probes it with one UDP query every millisecond
from another thread, and rewrites the file ``--reloads`` times (one Service's IP
changed each time).  For each reload it prints the longest query latency seen
while the reload ran, how many probes took over 50 ms, and how long the edit took
to be answered.  ``--checkout`` runs another checkout's code (e.g. an older
commit in a git worktree) to compare before and after.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query

ROOT = Path(__file__).resolve().parent.parent


def services(count: int, changed: int) -> str:
    """``count`` Services; s0's IP encodes ``changed`` so each rewrite differs in one Service."""
    docs = []
    for i in range(count):
        ip = f"10.{100 + changed}.0.1" if i == 0 else f"10.96.{i // 250}.{i % 250 + 1}"
        docs.append(f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: default}}\n"
                    f"spec:\n  clusterIP: {ip}\n  ports: [{{name: http, port: 80}}]\n")
    return "".join(docs)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answer(port: int, name: str, timeout: float = 2.0) -> str | None:
    reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=timeout)
    return next((rd.to_text() for rrset in reply.answer for rd in rrset), None)


class Probe(threading.Thread):
    """One query at a time, back to back with a 1 ms pause: (start, latency or None for a timeout)."""

    def __init__(self, port: int):
        super().__init__(name="probe", daemon=True)
        self.port, self.samples, self.stop = port, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                answer(self.port, "s5.default.svc.cluster.local", timeout=3.0)
                self.samples.append((started, time.monotonic() - started))
            except dns.exception.Timeout:
                self.samples.append((started, None))
            time.sleep(0.001)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--reloads", type=int, default=3)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the code to run (default: this checkout)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="reload-stall-"))
    zones = work / "zones"
    zones.mkdir()
    manifest = zones / "many.yaml"
    manifest.write_text(services(args.services, 0))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(args.checkout.resolve())}
    help_text = subprocess.run([sys.executable, "-m", "clusterdns.cli", "serve", "--help"], env=env,
                               capture_output=True, text=True, cwd=tempfile.gettempdir()).stdout
    extra = ["--no-forward"] if "--no-forward" in help_text else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "clusterdns.cli", "serve", "--manifests", str(zones), "--listen", f"127.0.0.1:{port}",
         "--http", "", *extra], env=env, stderr=subprocess.PIPE, text=True, cwd=work,
    )
    log: list[str] = []
    started = threading.Event()

    def read_log() -> None:
        for line in proc.stderr:
            log.append(line)
            if "serving zone" in line:
                started.set()

    threading.Thread(target=read_log, daemon=True).start()
    try:
        if not started.wait(120):
            print("".join(log), file=sys.stderr)
            return 1
        probe = Probe(port)
        probe.start()
        time.sleep(1.0)
        print(f"{args.services} Services, {manifest.stat().st_size / 1e6:.1f} MB; code from {args.checkout}")
        print(f"{'reload':>6} {'max latency ms':>15} {'probes > 50 ms':>15} {'timeouts':>9} {'visible after s':>16}")
        for number in range(1, args.reloads + 1):
            text = services(args.services, number)
            first = len(probe.samples)
            edited = time.monotonic()
            manifest.write_text(text)
            want = f"10.{100 + number}.0.1"
            while answer(port, "s0.default.svc.cluster.local", timeout=5.0) != want:
                time.sleep(0.005)
            visible = time.monotonic() - edited
            time.sleep(0.5)  # let the probes that straddle the commit come back
            window = probe.samples[first:]
            latencies = [lat for _, lat in window if lat is not None]
            timeouts = sum(1 for _, lat in window if lat is None)
            slow = sum(1 for lat in latencies if lat > 0.05)
            print(f"{number:>6} {max(latencies) * 1000:>15.1f} {slow:>15} {timeouts:>9} {visible:>16.2f}")
        probe.stop.set()
        probe.join(5)
    finally:
        proc.terminate()
        proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
