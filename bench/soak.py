"""``make soak``: every fault of issue 8 against a real ``clusterdns serve``, one table row each.

Usage: python bench/soak.py [--only NAME,...] [--markdown]

Each scenario starts its own server (a ``clusterdns serve`` subprocess on
127.0.0.1, ports chosen by the server, forwarding off), puts it under the
fault, and prints one row: scenario, load, queries answered, lost, errors
logged, RSS before, peak and after, verdict.  Everything stays on loopback; the
Kubernetes API scenarios use the in-process fake API server of the tests.  The
whole run is bounded (each scenario by its own deadline, all of them by
:data:`TOTAL_BUDGET`); a scenario whose fix is not in this checkout shows FAIL,
with the reason in the notes under the table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import resource
import shutil
import signal
import socket
import string
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # tests.fake_apiserver and bench/abuse.py

CLI = [sys.executable, "-m", "clusterdns.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TOTAL_BUDGET = 570.0  # seconds for the whole run: make soak stays under 10 minutes
ZONE = "cluster.local"
STALL_BOUND_MS = 250  # big reload: no answer may wait longer (it was 600-1,300 ms)
FLOOD_RSS_BOUND_MB = 100
ATTACK_DEADLINE = 60.0  # seconds a bench/abuse.py attack may take  # unique-name flood: RSS may grow by at most this (bounded caches)


# --------------------------------------------------------------------------- a server under test


def serve_argv(*args: str) -> list[str]:
    """``clusterdns serve`` with forwarding off (a checkout from before --no-forward never forwards)."""
    global _NO_FORWARD
    if _NO_FORWARD is None:
        usage = subprocess.run([*CLI, "serve", "--help"], env=ENV, capture_output=True, text=True,
                               cwd=tempfile.gettempdir()).stdout  # not the checkout: -m would import it
        _NO_FORWARD = ["--no-forward"] if "--no-forward" in usage else []
    return [*CLI, "serve", *_NO_FORWARD, *args]


_NO_FORWARD: list[str] | None = None


class Server:
    """``clusterdns serve`` as a process: its ports (read from its log), its log, its RSS."""

    started: list["Server"] = []  # every one, so that none outlives a scenario that failed half-way

    def __init__(self, *args: str, workdir: Path, http: str = "127.0.0.1:0", wait: bool = True):
        argv = serve_argv("--listen", "127.0.0.1:0", *args)
        if http is not None and "--http" not in args:
            argv += ["--http", http]
        self.proc = subprocess.Popen(argv, cwd=workdir, env=ENV, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        Server.started.append(self)
        self.lines: list[str] = []
        self._logged = threading.Condition()
        self.rss_peak = 0
        self._sampling = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._sample, daemon=True).start()
        self.port = self.http = None
        if wait:
            self.wait_for(r"serving zone|cannot listen|Traceback", timeout=60)
            self.port = self._port(r"listening on \S+ port (\d+)")
            self.http = self._port(r"metrics on http://[^:]+:(\d+)/")
            if self.port is None:
                raise RuntimeError("server did not start:\n" + self.text[-2000:])
        self.rss_before = self.rss()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._logged:
                self.lines.append(line)
                self._logged.notify_all()
        with self._logged:
            self._logged.notify_all()

    def _sample(self) -> None:
        while self.proc.poll() is None and not self._sampling.wait(0.1):
            self.rss_peak = max(self.rss_peak, self.rss())

    def rss(self) -> int:
        """Resident set size in bytes (0 once the process is gone)."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _port(self, pattern: str) -> int | None:
        found = [re.search(pattern, line) for line in self.lines]
        return next((int(m.group(1)) for m in found if m), None)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def mark(self) -> int:
        return len(self.lines)

    def wait_for(self, pattern: str, start: int = 0, timeout: float = 10.0) -> str | None:
        """The first log line from ``start`` matching ``pattern``; None after ``timeout`` or exit."""
        deadline = time.monotonic() + timeout
        with self._logged:
            while True:
                found = next((line for line in self.lines[start:] if re.search(pattern, line)), None)
                remaining = deadline - time.monotonic()
                if found is not None or remaining <= 0 or self.proc.poll() is not None:
                    return found
                self._logged.wait(min(remaining, 0.2))

    def errors_logged(self, start: int = 0) -> int:
        """Log lines at ERROR, and tracebacks, from ``start`` on."""
        return sum(1 for line in self.lines[start:] if " ERROR " in line or line.startswith("Traceback"))

    def tracebacks(self, start: int = 0) -> int:
        return sum(1 for line in self.lines[start:] if line.startswith("Traceback"))

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError as err:
            return 0, str(err)

    def metric(self, name: str) -> float | None:
        _, body = self.get("/metrics")
        values = [float(line.split()[-1]) for line in body.splitlines() if line.startswith(name)
                  and not line.startswith("#")]
        return sum(values) if values else None

    def ask(self, name: str, qtype: str = "A", tcp: bool = False, timeout: float = 2.0) -> dns.message.Message | None:
        q = dns.message.make_query(name, qtype)
        try:
            if tcp:
                return dns.query.tcp(q, "127.0.0.1", port=self.port, timeout=timeout)
            return dns.query.udp(q, "127.0.0.1", port=self.port, timeout=timeout)
        except (dns.exception.DNSException, OSError, EOFError):  # EOFError: closed on us mid-reply
            return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None
        finally:
            self._sampling.set()


def addresses(reply: dns.message.Message | None) -> list[str] | None:
    return None if reply is None else sorted(rd.to_text() for rrset in reply.answer for rd in rrset)


# --------------------------------------------------------------------------- load


class Load(threading.Thread):
    """UDP queries at ``rate`` per second from one socket; counts answers by ID and rcode."""

    def __init__(self, port: int, make: Callable[[int], bytes], rate: float, expect_reply: bool = True):
        super().__init__(daemon=True)
        self.port, self.make, self.rate = port, make, rate
        self.sent = 0
        self.rcodes: Counter[int] = Counter()
        self.latencies: list[float] = []
        self._pending: dict[int, float] = {}
        self._halt = threading.Event()
        self.expect_reply = expect_reply

    def run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.connect(("127.0.0.1", self.port))
        sock.setblocking(False)
        started = time.monotonic()
        try:
            while not self._halt.is_set():
                due = started + self.sent / self.rate
                now = time.monotonic()
                while now >= due and not self._halt.is_set():
                    qid = self.sent & 0xFFFF
                    with contextlib.suppress(OSError):
                        sock.send(struct.pack("!H", qid) + self.make(self.sent)[2:])
                        self._pending[qid] = now
                    self.sent += 1
                    due = started + self.sent / self.rate
                self._drain(sock)
                time.sleep(min(0.002, max(0.0, due - time.monotonic())))
            end = time.monotonic() + 1.0  # stragglers
            while self._pending and time.monotonic() < end:
                self._drain(sock)
                time.sleep(0.005)
        finally:
            sock.close()

    def _drain(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(65535)
            except (BlockingIOError, ConnectionRefusedError):
                return
            if len(data) < 4:
                continue
            qid = struct.unpack("!H", data[:2])[0]
            sent = self._pending.pop(qid, None)
            if sent is not None:
                self.latencies.append(time.monotonic() - sent)
                self.rcodes[data[3] & 0x0F] += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    @property
    def answered(self) -> int:
        return sum(self.rcodes.values())

    @property
    def lost(self) -> int:
        return self.sent - self.answered


def query_bytes(name: str, qtype: str = "A", **kwargs) -> bytes:
    return dns.message.make_query(name, qtype, **kwargs).to_wire()


def names_load(port: int, names: list[str], rate: float) -> Load:
    wires = [query_bytes(n) for n in names]
    return Load(port, lambda i: wires[i % len(wires)], rate)


# --------------------------------------------------------------------------- rows


@dataclass
class Row:
    scenario: str
    load: str = ""
    answered: int = 0
    lost: int = 0
    errors: int = 0
    rss: tuple[int, int, int] = (0, 0, 0)
    verdict: str = "FAIL"
    notes: list[str] = field(default_factory=list)

    def check(self, ok: bool, why: str) -> bool:
        if not ok:
            self.notes.append(why)
        return ok

    def tally(self, load: Load, server: Server, mark: int, allowed_lost: int = 0) -> bool:
        """Take the load's counts and the server's errors since ``mark``; True if no more than ``allowed_lost`` lost."""
        self.answered, self.lost, self.errors = load.answered, load.lost, server.errors_logged(mark)
        return self.check(load.lost <= allowed_lost, f"{load.lost} queries unanswered")

    def finish(self, server: Server | None, *checks: bool) -> "Row":
        if server is not None:
            self.rss = (server.rss_before, max(server.rss_peak, server.rss()), server.rss())
        self.verdict = "PASS" if all(checks) else "FAIL"
        return self


def services_yaml(count: int, prefix: str = "10.96", start: int = 0, name: str = "s") -> str:
    return "".join(
        f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}{i}, namespace: default}}\n"
        f"spec:\n  clusterIP: {prefix}.{i // 250}.{i % 250 + 1}\n  ports: [{{name: http, port: 80}}]\n"
        for i in range(start, start + count)
    )


def svc(name: str) -> str:
    return f"{name}.default.svc.{ZONE}"


def manifest_server(work: Path, text: str, *extra: str) -> tuple[Path, Server]:
    """A server on ``work/zones`` holding ``text`` as ``many.yaml``."""
    zones = work / "zones"
    zones.mkdir(exist_ok=True)
    (zones / "many.yaml").write_text(text)
    return zones, Server("--manifests", str(zones), *extra, workdir=work)


# --------------------------------------------------------------------------- scenarios: manifests


def directory_removed(work: Path) -> Row:
    row = Row("directory removed, then back")
    zones, server = manifest_server(work, services_yaml(100))
    load = names_load(server.port, [svc(f"s{i}") for i in range(100)], 300)
    row.load = "300 q/s over 100 Services"
    mark = server.mark()
    load.start()
    time.sleep(1)
    shutil.rmtree(zones)
    gone = server.wait_for(r"is gone", start=mark, timeout=5) is not None
    status, body = server.get("/ready")
    time.sleep(2)
    staging = work / "staging"
    staging.mkdir()
    (staging / "many.yaml").write_text(services_yaml(100, prefix="10.97"))
    staging.rename(zones)
    back = server.wait_for(r"is back", start=mark, timeout=5) is not None
    deadline = time.monotonic() + 5
    while addresses(server.ask(svc("s1"))) != ["10.97.0.2"] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    load.stop()
    delivered = row.tally(load, server, mark)
    nx = load.rcodes[dns.rcode.NXDOMAIN]
    row.finish(server, row.check(gone and status == 503, f"/ready while gone: {status} {body.strip()!r}"),
               row.check(nx == 0, f"{nx} NXDOMAIN while the directory was gone"),
               row.check(back and addresses(server.ask(svc("s1"))) == ["10.97.0.2"], "not picked up again"),
               delivered)
    server.stop()
    return row


def half_written(work: Path) -> Row:
    row = Row("file written in two steps")
    zones, server = manifest_server(work, services_yaml(4000))
    f = zones / "many.yaml"
    load = names_load(server.port, [svc(f"s{i}") for i in range(2000, 4000, 7)], 500)
    row.load = "500 q/s on the second half; 4,000 Services rewritten half, 0.2 s, rest"
    mark = server.mark()
    load.start()
    time.sleep(1)
    new = services_yaml(4000, prefix="10.98")
    cut = new.index("---", len(new) // 2)
    with f.open("w") as out:
        out.write(new[:cut])
        out.flush()
        time.sleep(0.2)
        out.write(new[cut:])
    deadline = time.monotonic() + 10
    while addresses(server.ask(svc("s3999"))) != ["10.98.15.250"] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    load.stop()
    delivered = row.tally(load, server, mark)
    nx = load.rcodes[dns.rcode.NXDOMAIN]
    row.finish(server, row.check(nx == 0, f"{nx} NXDOMAIN: the half file was served"),
               row.check(addresses(server.ask(svc("s3999"))) == ["10.98.15.250"], "the whole file never applied"),
               delivered)
    server.stop()
    return row


def big_reload(work: Path) -> Row:
    row = Row("10,000-Service reload stall")
    zones, server = manifest_server(work, services_yaml(10_000))
    f = zones / "many.yaml"
    load = names_load(server.port, [svc(f"s{i}") for i in range(0, 10_000, 13)], 500)
    mark = server.mark()
    load.start()
    time.sleep(1)
    for n in range(3):
        f.write_text(services_yaml(10_000).replace("10.96.0.1\n", f"10.99.0.{n + 1}\n", 1))
        deadline = time.monotonic() + 15
        while addresses(server.ask(svc("s0"))) != [f"10.99.0.{n + 1}"] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    load.stop()
    worst = max(load.latencies) * 1000 if load.latencies else float("inf")
    row.load = f"500 q/s, 3 reloads; worst answer {worst:.0f} ms"
    delivered = row.tally(load, server, mark)
    row.finish(server, row.check(worst < STALL_BOUND_MS, f"an answer took {worst:.0f} ms during a reload"),
               delivered)
    server.stop()
    return row


def oversized_file(work: Path) -> Row:
    row = Row("1 GiB sparse manifest")
    zones, server = manifest_server(work, services_yaml(10))
    load = names_load(server.port, [svc(f"s{i}") for i in range(10)], 300)
    row.load = "300 q/s; a 1 GiB sparse file dropped in"
    mark = server.mark()
    load.start()
    time.sleep(0.5)
    with (zones / "huge.yaml").open("wb") as big:
        big.truncate(1 << 30)
    named = server.wait_for(r"huge\.yaml.*(over the limit|invalid|cannot)", start=mark, timeout=20)
    time.sleep(1)
    load.stop()
    delivered = row.tally(load, server, mark)
    before, peak, _ = server.rss_before, server.rss_peak, server.rss()
    row.finish(server, row.check(named is not None and "over the limit" in named, f"logged: {named!r}"),
               row.check(peak - before < 50 << 20, f"RSS grew by {(peak - before) >> 20} MiB: the file was read"),
               delivered)
    server.stop()
    return row


# --------------------------------------------------------------------------- scenarios: the API


def with_fake_api(work: Path, services: int = 50):
    from tests.fake_apiserver import FakeApiServer, service, write_kubeconfig

    api = FakeApiServer().start()
    for i in range(services):
        api.add(service(f"s{i}", ip=f"10.96.{i // 250}.{i % 250 + 1}"))
    return api, write_kubeconfig(work / "kubeconfig", api.url), service


def frozen_api(work: Path) -> Row:
    row = Row("frozen API (TCP open, no answer)")
    api, kubeconfig, service = with_fake_api(work)
    try:
        server = Server("--kubeconfig", str(kubeconfig), "--ready-grace", "2", "--watch-inactivity-timeout", "1",
                        workdir=work)
        load = names_load(server.port, [svc(f"s{i}") for i in range(50)], 300)
        mark = server.mark()
        load.start()
        time.sleep(1)
        api.freeze()
        frozen = time.monotonic()
        deadline, ready = frozen + 15, 200
        while time.monotonic() < deadline and ready != 503:
            ready = server.get("/ready")[0]
            time.sleep(0.2)
        waited = time.monotonic() - frozen
        row.load = (f"300 q/s; API frozen, /ready 503 after {waited:.0f} s (--ready-grace 2)" if ready == 503 else
                    f"300 q/s; API frozen, /ready still {ready} after {waited:.0f} s (--ready-grace 2)")
        reachable_down = server.metric("clusterdns_api_reachable")
        api.thaw()
        api.modify(service("s1", ip="10.99.9.9"))
        deadline = time.monotonic() + 10
        while addresses(server.ask(svc("s1"))) != ["10.99.9.9"] and time.monotonic() < deadline:
            time.sleep(0.05)
        while server.get("/ready")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        load.stop()
        delivered = row.tally(load, server, mark)
        row.finish(server, row.check(ready == 503, "/ready stayed 200 with the API frozen"),
                   row.check(reachable_down == 0, f"clusterdns_api_reachable {reachable_down} while frozen"),
                   row.check(addresses(server.ask(svc("s1"))) == ["10.99.9.9"], "no catch-up after thawing"),
                   delivered)
        server.stop()
    finally:
        api.stop()  # a server left running is stopped by main()
    return row


def quiet_api(work: Path) -> Row:
    row = Row("quiet API (no bookmarks)")
    api, kubeconfig, _ = with_fake_api(work)
    api.quiet()
    try:
        server = Server("--kubeconfig", str(kubeconfig), "--watch-inactivity-timeout", "1", workdir=work)
        load = names_load(server.port, [svc(f"s{i}") for i in range(50)], 200)
        row.load = "200 q/s; 10 s without a byte on the watches, timeout 1 s"
        mark = server.mark()
        load.start()
        time.sleep(10)
        load.stop()
        restarts = server.metric("clusterdns_watch_restarts_total") or 0
        delivered = row.tally(load, server, mark)
        row.load += f"; {int(restarts)} watch restarts, {len(api.probes())} probes"
        row.finish(server, row.check(restarts == 0, f"{int(restarts)} watch restarts of quiet watches"),
                   row.check(server.get("/ready")[0] == 200, "not ready"),
                   delivered)
        server.stop()
    finally:
        api.stop()  # a server left running is stopped by main()
    return row


def api_returns(work: Path) -> Row:
    row = Row("API back after 6 s away: catch-up")
    api, kubeconfig, service = with_fake_api(work)
    try:
        server = Server("--kubeconfig", str(kubeconfig), workdir=work)
        load = names_load(server.port, [svc(f"s{i}") for i in range(50)], 200)
        mark = server.mark()
        load.start()
        time.sleep(1)
        api.unavailable_for(6.0)
        while not api.available:
            time.sleep(0.05)
        api.modify(service("s1", ip="10.99.9.9"))
        changed = time.monotonic()
        while addresses(server.ask(svc("s1"))) != ["10.99.9.9"] and time.monotonic() - changed < 15:
            time.sleep(0.02)
        took = time.monotonic() - changed
        load.stop()
        row.load = f"200 q/s; change visible {took:.1f} s after the API returned"
        delivered = row.tally(load, server, mark)
        row.finish(server, row.check(took <= 2.0, f"the change took {took:.1f} s"),
                   delivered)
        server.stop()
    finally:
        api.stop()  # a server left running is stopped by main()
    return row


# --------------------------------------------------------------------------- scenarios: process life


def signals(work: Path) -> Row:
    row = Row("SIGHUP, SIGUSR1, SIGUSR2, then SIGTERM")
    _, server = manifest_server(work, services_yaml(100))
    load = names_load(server.port, [svc(f"s{i}") for i in range(100)], 300)
    row.load = "300 q/s; each signal twice"
    mark = server.mark()
    load.start()
    alive = True
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2) * 2:
        seen = server.mark()
        server.proc.send_signal(sig)
        logged = server.wait_for(sig.name, start=seen, timeout=5)
        time.sleep(0.5)  # answers keep flowing between signals
        alive = alive and server.proc.poll() is None and logged is not None
        if not alive:
            break
    load.stop()
    delivered = row.tally(load, server, mark)
    row.finish(server)
    code = server.stop()
    row.finish(None, row.check(alive, "a signal killed the server, or it said nothing"),
               row.check(code == 0, f"SIGTERM exit status {code}"),
               row.check(server.tracebacks(mark) == 0, "tracebacks in the log"),
               delivered)
    return row


def unique_flood(work: Path) -> Row:
    row = Row("unique-name flood (RSS)")
    _, server = manifest_server(work, services_yaml(100))
    prefix = "".join(random.choices(string.ascii_lowercase, k=6))
    rate, seconds = 4000, 40
    load = Load(server.port, lambda i: query_bytes(f"{prefix}{i}.default.svc.{ZONE}"), rate)
    row.load = f"{rate} q/s of never-seen names for {seconds} s ({rate * seconds:,} names)"
    mark = server.mark()
    load.start()
    time.sleep(seconds)
    load.stop()
    time.sleep(1)
    delivered = row.tally(load, server, mark, allowed_lost=load.sent // 100)
    row.load = f"{load.sent / seconds:.0f} q/s of never-seen names for {seconds} s ({load.sent:,} names)"
    grew = (max(server.rss_peak, server.rss()) - server.rss_before) >> 20
    row.finish(server, row.check(grew <= FLOOD_RSS_BOUND_MB, f"RSS grew by {grew} MiB (bound {FLOOD_RSS_BOUND_MB})"),
               delivered)
    server.stop()
    return row


# --------------------------------------------------------------------------- scenarios: the wire


def zones_server(work: Path, *extra: str, headless_endpoints: int = 0) -> Server:
    zones = work / "zones"
    zones.mkdir()
    if headless_endpoints:
        (zones / "db.yaml").write_text(
            "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: default}\nspec: {clusterIP: None}\n"
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
            "metadata: {name: db-1, namespace: default, labels: {kubernetes.io/service-name: db}}\n"
            "addressType: IPv4\nendpoints:\n" + "".join(
                f"- addresses: [10.1.{i // 250}.{i % 250 + 1}]\n" for i in range(headless_endpoints))
            + "ports: [{name: pg, port: 5432, protocol: TCP}]\n"
        )
    kubernetes = services_yaml(1, prefix="10.95", name="kubernetes").replace("name: kubernetes0", "name: kubernetes")
    return manifest_server(work, services_yaml(20) + kubernetes, *extra)[1]


def raw_query(qname: bytes, qtype: int = 1, extra: bytes = b"", ancount: int = 0, arcount: int = 0) -> bytes:
    return struct.pack("!6H", 0, 0x0100, 1, ancount, 0, arcount) + qname + struct.pack("!2H", qtype, 1) + extra


def labels(*parts: bytes) -> bytes:
    return b"".join(bytes([len(p)]) + p for p in parts) + b"\x00"


def abuse(title: str, scenario: str, *server_args: str, headless_endpoints: int = 0, **options):
    """A scenario of bench/abuse.py (the hostile clients) against its own server, with the server's log and RSS."""

    def run(work: Path) -> Row:
        import abuse as attacks  # bench/abuse.py, beside this file

        server = zones_server(work, *server_args, headless_endpoints=headless_endpoints)
        mark = server.mark()
        done: list = []
        # An attack waits for each reply in turn: against a server that answers nothing it would
        # take for ever, so it runs on a thread and is given up on after ATTACK_DEADLINE.
        attack = threading.Thread(target=lambda: done.append(
            attacks.run(scenario, "127.0.0.1", server.port, http_port=server.http, **options)), daemon=True)
        attack.start()
        attack.join(ATTACK_DEADLINE)
        time.sleep(0.5)  # what the server logs about it
        if not done:
            row = Row(title, f"did not finish within {ATTACK_DEADLINE:g} s", errors=server.errors_logged(mark))
            row.finish(server, row.check(False, f"the attack was still waiting for replies after {ATTACK_DEADLINE:g} s"))
            server.stop()
            return row
        result = done[0]
        row = Row(title, f"{result.load}; {result.note}" if result.note else result.load, result.answered,
                  result.lost, server.errors_logged(mark))
        tracebacks = server.tracebacks(mark)
        row.finish(server, row.check(result.ok, result.note or "failed"),
                   row.check(tracebacks == 0, f"{tracebacks} tracebacks logged"))
        server.stop()
        return row

    return run


def opt_in_answer(work: Path) -> Row:
    row = Row("FORMERR: an OPT record in the answer")
    server = zones_server(work)
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    query = raw_query(labels(b"s1", b"default", b"svc", b"cluster", b"local"), extra=opt, ancount=1)
    load = Load(server.port, lambda i: query, 200)
    row.load = "200 q/s for 3 s"
    mark = server.mark()
    load.start()
    time.sleep(3)
    load.stop()
    delivered = row.tally(load, server, mark)
    formerr = load.rcodes[dns.rcode.FORMERR]
    row.finish(server, row.check(formerr == load.sent, f"rcodes {dict(load.rcodes)} for {load.sent} sent"), delivered)
    server.stop()
    return row


def source_port_zero(work: Path) -> Row:
    row = Row("queries from source port 0")
    server = zones_server(work)
    query = query_bytes(svc("s1"))
    try:
        sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        sniffer = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    except PermissionError:
        row.load = "needs root (raw sockets)"
        row.verdict = "SKIP"
        server.stop()
        return row
    sniffer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 23)  # it sees every UDP packet on the host
    sniffer.settimeout(0.2)
    mark = server.mark()
    sent, control = 200, 40053  # the same queries from an ordinary port show the sniffer sees replies
    replies: Counter[int] = Counter()
    listening = threading.Event()

    def sniff() -> None:
        deadline = time.monotonic() + 3.0
        listening.set()
        while time.monotonic() < deadline:
            try:
                packet = sniffer.recv(65535)
            except TimeoutError:
                continue
            ihl = (packet[0] & 0x0F) * 4
            src, dst = struct.unpack("!2H", packet[ihl:ihl + 4])
            if src == server.port:
                replies[dst] += 1

    sniffing = threading.Thread(target=sniff, daemon=True)
    sniffing.start()
    listening.wait(5)
    for src in (0, control):
        for _ in range(sent):
            udp = struct.pack("!4H", src, server.port, 8 + len(query), 0) + query  # checksum 0: none (IPv4)
            sender.sendto(udp, ("127.0.0.1", 0))
            time.sleep(0.001)
    sniffing.join(10)
    sender.close()
    sniffer.close()
    row.load = f"{sent} queries from port 0 and {sent} from port {control} (raw socket)"
    row.answered, row.lost, row.errors = replies[0], 0, server.errors_logged(mark)
    row.finish(server, row.check(replies[0] == 0, f"{replies[0]} replies sent to port 0"),
               row.check(replies[control] > 0, "the control queries got no reply: the sniffer sees nothing"),
               row.check(row.errors == 0, f"{row.errors} error lines logged"))
    server.stop()
    return row


def disconnect_tracebacks(work: Path) -> Row:
    row = Row("TCP clients vanishing mid-reply")
    server = zones_server(work)
    mark = server.mark()
    query = query_bytes(svc("s1"))
    framed = struct.pack("!H", len(query)) + query
    clients = []
    for _ in range(300):  # replies pile up unread, then the clients reset: writes fail under the server
        with contextlib.suppress(OSError):
            c = socket.create_connection(("127.0.0.1", server.port), timeout=2)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            c.setblocking(False)
            with contextlib.suppress(OSError):
                c.send(framed * 200)
            clients.append(c)
    time.sleep(1)
    for c in clients:
        c.close()
    time.sleep(2)
    row.load = f"{len(clients)} clients: 200 pipelined queries unread, then RST"
    row.answered, row.lost, row.errors = 0, 0, server.errors_logged(mark)
    tb = server.tracebacks(mark)
    row.finish(server, row.check(tb == 0, f"{tb} tracebacks logged"),
               row.check(server.ask(svc("s1"), tcp=True) is not None, "TCP not answering afterwards"))
    server.stop()
    return row


def sigterm_tracebacks(work: Path) -> Row:
    row = Row("SIGTERM with open TCP connections")
    server = zones_server(work)
    mark = server.mark()
    conns = []
    for _ in range(100):
        with contextlib.suppress(OSError):
            conns.append(socket.create_connection(("127.0.0.1", server.port), timeout=2))
    time.sleep(0.5)
    row.load = f"{len(conns)} idle TCP connections at SIGTERM"
    row.rss = (server.rss_before, max(server.rss_peak, server.rss()), server.rss())
    code = server.stop()
    for c in conns:
        c.close()
    tb = server.tracebacks(mark)
    row.errors = server.errors_logged(mark)
    row.finish(None, row.check(code == 0, f"exit status {code}"),
               row.check(tb == 0 and "CancelledError" not in server.text, f"{tb} tracebacks logged"))
    return row


def port_collisions(work: Path) -> Row:
    row = Row("port collisions: DNS and HTTP")
    (work / "zones").mkdir()
    (work / "zones" / "a.yaml").write_text(services_yaml(1))
    checks = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        proc = subprocess.run(serve_argv("--manifests", "zones", "--listen", f"127.0.0.1:{port}", "--http", ""),
                              cwd=work, env=ENV, capture_output=True, text=True, timeout=60)
        checks.append(row.check(proc.returncode == 3 and f"port {port}" in proc.stderr and "--listen" in proc.stderr,
                                f"DNS port taken: exit {proc.returncode}, {proc.stderr.strip()[-200:]!r}"))
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        proc = subprocess.run(serve_argv("--manifests", "zones", "--listen", "127.0.0.1:0", "--http",
                                         f"127.0.0.1:{port}"), cwd=work, env=ENV, capture_output=True, text=True,
                              timeout=60)
        checks.append(row.check(proc.returncode == 3 and f"port {port}" in proc.stderr and "--http" in proc.stderr,
                                f"HTTP port taken: exit {proc.returncode}, {proc.stderr.strip()[-200:]!r}"))
    row.load = "a taken DNS port, a taken --http port"
    return row.finish(None, *checks)


SCENARIOS: list[tuple[str, Callable[[Path], Row]]] = [
    ("bad-names", abuse("64-byte labels, 256-byte names, trailing bytes", "bad-names")),
    ("opt-in-answer", opt_in_answer),
    ("any", abuse("ANY amplification", "amplification", headless_endpoints=400, name=f"db.default.svc.{ZONE}")),
    ("port0", source_port_zero),
    ("tcp-hold", abuse("TCP: idle, slow-loris, never-reading", "tcp-hold")),
    ("http-slowloris", abuse("HTTP slow-loris vs /health", "http-slowloris")),
    ("disconnect", disconnect_tracebacks),
    ("sigterm", sigterm_tracebacks),
    ("ports", port_collisions),
    ("dir-removed", directory_removed),
    ("half-written", half_written),
    ("big-reload", big_reload),
    ("oversized", oversized_file),
    ("frozen-api", frozen_api),
    ("quiet-api", quiet_api),
    ("api-returns", api_returns),
    ("signals", signals),
    ("flood", unique_flood),
]


def mib(n: int) -> str:
    return f"{n / (1 << 20):.0f}" if n else "-"


def table(rows: list[Row], markdown: bool) -> str:
    head = ["scenario", "load", "answered", "lost", "errors logged", "RSS before/peak/after MiB", "verdict"]
    body = [[r.scenario, r.load, str(r.answered), str(r.lost), str(r.errors),
             "/".join(mib(x) for x in r.rss) if any(r.rss) else "-", r.verdict] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
    else:
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in [head, *body]]
    notes = [f"- {r.scenario}: {'; '.join(r.notes)}" for r in rows if r.notes]
    return "\n".join(lines + ([""] + notes if notes else []))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated scenario names: " + ", ".join(n for n, _ in SCENARIOS))
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--checkout", type=Path, help="serve with another checkout's code (e.g. an older commit)")
    args = parser.parse_args()
    if args.checkout:
        ENV["PYTHONPATH"] = str(args.checkout.resolve())
    wanted = set(args.only.split(",")) if args.only else None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))  # 1,000 TCP clients
    started = time.monotonic()
    rows = []
    for name, scenario in SCENARIOS:
        if wanted and name not in wanted:
            continue
        if time.monotonic() - started > TOTAL_BUDGET:
            rows.append(Row(name, verdict="SKIP", notes=["out of time"]))
            continue
        work = Path(tempfile.mkdtemp(prefix=f"soak-{name}-"))
        t0 = time.monotonic()
        try:
            row = scenario(work)
        except Exception as exc:  # noqa: BLE001 (one broken scenario must not hide the others)
            row = Row(name, notes=[f"{type(exc).__name__}: {exc}"])
        finally:
            for server in Server.started:
                server.stop(signal.SIGKILL)  # a no-op for those the scenario stopped
            Server.started.clear()
            shutil.rmtree(work, ignore_errors=True)
        rows.append(row)
        print(f"{row.verdict:<4} {row.scenario} ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
    print(f"clusterdns soak, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{time.monotonic() - started:.0f} s")
    print(table(rows, args.markdown))
    return 0 if all(r.verdict != "FAIL" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
