"""Hostile-client load against a running clusterdns: one function per attack of issue 8, each a row.

Usage: python bench/abuse.py --dns 127.0.0.1:PORT [--http 127.0.0.1:PORT] [--scale 1.0] [SCENARIO ...]

Each scenario attacks the server it is given, then checks that ordinary
clients are still answered, and returns a :class:`Row`: what was sent, how
many ordinary queries (or probes) were answered and lost, and a verdict.  A
soak can start a server per scenario (with small limits, e.g.
``--max-tcp-connections 100``), call :func:`run`, and read the server's own
log and RSS around it.  Only the given (loopback) addresses are contacted.

Scenarios:

* ``bad-names``: UDP queries whose names cannot be packed (a 64-byte label,
  a 256-byte name), and queries with trailing bytes: each must get FORMERR.
* ``amplification``: ANY for ``--name`` over UDP offering 65535 bytes: the
  reply must stay within 1232 bytes (the server's ``--max-udp-size``).
* ``tcp-hold``: more TCP connections than the server's limit, half saying
  nothing and half slow-loris (one byte), plus clients that pipeline queries
  and never read; then fresh TCP queries must be answered within 1 s each.
* ``http-slowloris``: more slow HTTP connections than the listener serves at
  once (64), then ``/health`` probes with kubelet's 1 s timeout.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Callable

import dns.exception
import dns.message
import dns.query
import dns.rcode

ORDINARY = "kubernetes.default.svc.cluster.local"  # a name every cluster (and zones/) has


@dataclass
class Row:
    scenario: str
    load: str  # what was sent, in words
    answered: int  # ordinary queries or probes answered correctly during or after the attack
    lost: int
    ok: bool
    note: str = ""

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAIL"
        return f"{self.scenario:<16} {self.load:<58} {self.answered:>8} {self.lost:>5}  {verdict}  {self.note}"


def _query(labels: list[bytes], qtype: int = 1, trailer: bytes = b"", ident: int = 0x4242) -> bytes:
    name = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", qtype, 1) + trailer


def _ordinary_udp(host: str, port: int, count: int) -> int:
    answered = 0
    for _ in range(count):
        try:
            reply = dns.query.udp(dns.message.make_query(ORDINARY, "A"), host, port=port, timeout=1)
            answered += bool(reply.answer)
        except (OSError, dns.exception.DNSException):
            pass
    return answered


def _ordinary_tcp(host: str, port: int, count: int) -> int:
    answered = 0
    for _ in range(count):
        try:
            reply = dns.query.tcp(dns.message.make_query(ORDINARY, "A"), host, port=port, timeout=1)
            answered += bool(reply.answer)
        except (OSError, EOFError, dns.exception.DNSException):
            pass
    return answered


def bad_names(host: str, port: int, scale: float = 1.0, **_) -> Row:
    shapes = [
        [b"a" * 64, b"default", b"svc", b"cluster", b"local"],
        [b"a" * 63] * 3 + [b"b" * 44, b"svc", b"cluster", b"local"],
    ]
    count = max(10, int(2000 * scale))
    formerr = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1)
        for i in range(count):
            if i % 3 == 2:
                packet = _query([b"kubernetes", b"default", b"svc", b"cluster", b"local"], trailer=b"junk")
            else:
                packet = _query(shapes[i % 3])
            sock.sendto(packet, (host, port))
            try:
                reply = sock.recv(512)
                formerr += reply[3] & 0x0F == dns.rcode.FORMERR
            except TimeoutError:
                pass
    ordinary = _ordinary_udp(host, port, 20)
    return Row("bad-names", f"{count} unpackable names / trailing bytes over UDP", ordinary, 20 - ordinary,
               formerr == count and ordinary == 20, f"{formerr}/{count} got FORMERR")


def amplification(host: str, port: int, name: str = ORDINARY, scale: float = 1.0, **_) -> Row:
    count = max(10, int(1000 * scale))
    query = dns.message.make_query(name, "ANY", use_edns=0, payload=65535).to_wire()
    largest = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1)
        for _ in range(count):
            sock.sendto(query, (host, port))
            try:
                largest = max(largest, len(sock.recv(65535)))
            except TimeoutError:
                pass
    ordinary = _ordinary_udp(host, port, 20)
    return Row("amplification", f"{count} UDP ANY {name} offering 65535 bytes", ordinary, 20 - ordinary,
               0 < largest <= 1232 and ordinary == 20,
               f"largest reply {largest} bytes for a {len(query)}-byte query ({largest / len(query):.1f}x)")


def tcp_hold(host: str, port: int, connections: int = 1100, never_reading: int = 300, scale: float = 1.0, **_) -> Row:
    held: list[socket.socket] = []
    connections, never_reading = max(4, int(connections * scale)), max(2, int(never_reading * scale))
    frame = dns.message.make_query(ORDINARY, "A").to_wire()
    frame = struct.pack("!H", len(frame)) + frame
    try:
        for i in range(connections):
            sock = socket.create_connection((host, port), timeout=3)
            if i % 2:
                sock.sendall(b"\x00")  # slow-loris: the first byte of a length prefix, and no more
            held.append(sock)
        for _ in range(never_reading):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((host, port))
            sock.setblocking(False)
            try:
                sock.send(frame * 2000)  # pipelined; the replies are never read
            except OSError:
                pass
            held.append(sock)
        # The pipelined queries are real work (never_reading x 2000 answers, until their
        # buffers fill): the first fresh query may wait for that, the next ones must not.
        started = time.monotonic()
        while not _ordinary_tcp(host, port, 1) and time.monotonic() - started < 30:
            pass
        first = time.monotonic() - started
        ordinary = _ordinary_tcp(host, port, 20)
    finally:
        for sock in held:
            sock.close()
    return Row("tcp-hold", f"{connections} idle/slow-loris + {never_reading} never-reading TCP clients",
               ordinary, 20 - ordinary, ordinary == 20 and first < 30,
               f"first fresh TCP answer after {first:.1f}s, then 20 with a 1 s timeout each")


def http_slowloris(host: str, port: int, http_port: int | None = None, connections: int = 70, scale: float = 1.0,
                   **_) -> Row:
    if http_port is None:
        return Row("http-slowloris", "skipped: no --http", 0, 0, True)
    slow = []
    try:
        for i in range(max(4, int(connections * scale))):
            sock = socket.create_connection((host, http_port), timeout=3)
            sock.sendall(b"GET /health HTTP/1.1\r\nX-Slow-%d: " % i)
            slow.append(sock)
        answered = 0
        for _ in range(20):
            try:
                conn = http.client.HTTPConnection(host, http_port, timeout=1)
                conn.request("GET", "/health")
                answered += conn.getresponse().status == 200
                conn.close()
            except OSError:
                pass
            for sock in slow:  # still sending, a byte at a time
                try:
                    sock.send(b"x")
                except OSError:
                    pass
    finally:
        for sock in slow:
            sock.close()
    return Row("http-slowloris", f"{len(slow)} slow HTTP clients (the listener serves 64 at once)",
               answered, 20 - answered, answered == 20, "/health probes, 1 s timeout each")


SCENARIOS: dict[str, Callable[..., Row]] = {
    "bad-names": bad_names,
    "amplification": amplification,
    "tcp-hold": tcp_hold,
    "http-slowloris": http_slowloris,
}


def run(scenario: str, host: str, port: int, **options) -> Row:
    """One scenario against the server at host:port (``http_port``, ``scale``, ``name`` as the functions take)."""
    return SCENARIOS[scenario](host, port, **options)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dns", required=True, metavar="HOST:PORT")
    parser.add_argument("--http", metavar="HOST:PORT")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count by this (default 1)")
    parser.add_argument("--name", default=ORDINARY, help="the name the amplification scenario asks ANY for")
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"any of {', '.join(SCENARIOS)} (default all)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}: expected {', '.join(SCENARIOS)}")
    host, port = _address(args.dns)
    http_port = _address(args.http)[1] if args.http else None
    print(f"{'scenario':<16} {'load':<58} {'answered':>8} {'lost':>5}  verdict")
    failed = 0
    for name in args.scenarios or SCENARIOS:
        started = time.monotonic()
        options = {"http_port": http_port, "scale": args.scale}
        if name == "amplification":
            options["name"] = args.name
        row = run(name, host, port, **options)
        print(row.line() + f" ({time.monotonic() - started:.1f}s)", flush=True)
        failed += not row.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
