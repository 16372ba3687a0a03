"""Small real upstream DNS servers for the forwarding tests, on 127.0.0.1.

- :class:`FakeUpstream` — asyncio, UDP and TCP (several queries per TCP
  connection), answering from :data:`RECORDS`; it counts every question, and
  can be slow (``delay``), truncate every UDP reply (``truncate_udp``) or relay
  every query to another server (``relay_to``: the forwarding loop).
- :class:`DnslibUpstream` — the same table served by dnslib's own server.
- :func:`dead_address` — a port with nothing listening.

Each runs its own thread; ``stop()`` (or leaving the ``with`` block) closes it.
Runnable by hand for doc captures: ``python -m tests.upstreams --port 21053``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct
import threading
from collections import Counter

from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

START_TIMEOUT = 5.0

# The test world: documentation addresses (RFC 5737, RFC 3849) only.
ZONE_LINES = """
example.com.          300 IN A     192.0.2.10
example.com.          300 IN AAAA  2001:db8::10
www.example.com.      120 IN CNAME example.com.
db.example.com.        60 IN A     192.0.2.20
my.database.example.com. 60 IN A   192.0.2.40
short.example.com.      1 IN A     192.0.2.30
many.example.com.     300 IN TXT   "a long text record to make the answer bigger than 512 bytes, one"
many.example.com.     300 IN TXT   "a long text record to make the answer bigger than 512 bytes, two"
many.example.com.     300 IN TXT   "a long text record to make the answer bigger than 512 bytes, three"
many.example.com.     300 IN TXT   "a long text record to make the answer bigger than 512 bytes, four"
many.example.com.     300 IN TXT   "a long text record to make the answer bigger than 512 bytes, five"
many.example.com.     300 IN TXT   "a long text record to make the answer bigger than 512 bytes, six"
many.example.com.     300 IN TXT   "a long text record to make the answer bigger than 512 bytes, seven"
10.2.0.192.in-addr.arpa. 300 IN PTR example.com.
app.corp.example.       60 IN A     198.51.100.7
.                   86400 IN NS    a.root-servers.net.
"""
SOA_LINES = {
    "example.com.": "example.com. 3600 IN SOA ns.example.com. hostmaster.example.com. 1 7200 1800 86400 30",
    "corp.example.": "corp.example. 3600 IN SOA ns.corp.example. hostmaster.corp.example. 1 7200 1800 86400 20",
    ".": ". 86400 IN SOA a.root-servers.net. nstld.verisign-grs.com. 1 1800 900 604800 86400",
}


def _table(text: str) -> dict[tuple[str, int], list[RR]]:
    table: dict[tuple[str, int], list[RR]] = {}
    for line in text.strip().splitlines():
        for rr in RR.fromZone(line):
            table.setdefault((str(rr.rname).lower(), rr.rtype), []).append(rr)
    return table


RECORDS = _table(ZONE_LINES)
SOAS = {origin: RR.fromZone(line)[0] for origin, line in SOA_LINES.items()}


def resolve(query: DNSRecord, records=RECORDS) -> DNSRecord:
    """The test world's answer: records (following CNAMEs, as a recursive resolver), NXDOMAIN/NODATA with the SOA."""
    reply = query.reply()  # RD copied, RA set
    q = query.q
    name = str(q.qname).lower()
    cname = None
    for _ in range(16):
        cname = records.get((name, QTYPE.CNAME)) if q.qtype != QTYPE.CNAME else None
        if not cname:
            break
        reply.add_answer(*cname)
        name = str(cname[0].rdata.label).lower()
    found = records.get((name, q.qtype))
    if found:
        reply.add_answer(*found)
        return reply
    exists = any(owner == name for owner, _ in records)  # the rcode is the last name's (RFC 6604)
    if not exists:
        reply.header.rcode = RCODE.NXDOMAIN
    origin = max((o for o in SOAS if o == "." or name == o or name.endswith("." + o)), key=len)
    reply.add_auth(SOAS[origin])
    return reply


def dead_address() -> tuple[str, int]:
    """An address on which nothing listens (UDP gets ICMP port unreachable, TCP a reset)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return "127.0.0.1", s.getsockname()[1]


class FakeUpstream:
    def __init__(
        self,
        delay: float = 0.0,
        truncate_udp: bool = False,
        relay_to: tuple[str, int] | None = None,
        records=RECORDS,
        port: int = 0,
        hold: bool = False,
    ):
        self.delay = delay
        self.hold = hold  # keep every reply until release()
        self._gate: asyncio.Event | None = None
        self.truncate_udp = truncate_udp
        self.relay_to = relay_to
        self.records = records
        self.host, self.port = "127.0.0.1", port
        self.asked: list[tuple[str, str, str]] = []  # (name, type, "udp"/"tcp") of every query
        self.tcp_connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-upstream", daemon=True)
        self._udp = None
        self._tcp = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def count(self, name: str | None = None, qtype: str | None = None) -> int:
        return sum(1 for n, t, _ in list(self.asked) if (name is None or n == name) and (qtype is None or t == qtype))

    def questions(self) -> Counter:
        return Counter((n, t) for n, t, _ in list(self.asked))

    # -------------------------------------------------------------- lifecycle

    def start(self) -> "FakeUpstream":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(START_TIMEOUT)
        return self

    def release(self) -> None:
        """Let held replies go (see ``hold``)."""
        self._loop.call_soon_threadsafe(self._gate.set)

    async def _start(self) -> None:
        self._gate = asyncio.Event()
        if not self.hold:
            self._gate.set()
        loop = asyncio.get_running_loop()
        upstream = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                upstream._spawn(upstream._answer_udp(self.transport, data, addr))

        for _ in range(20):
            self._udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=(self.host, self.port))
            port = self._udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
                self.port = port
                return
            except OSError:
                self._udp.close()
                if self.port:
                    raise
        raise OSError("no free port pair")

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def shutdown():
            self._udp.close()
            self._tcp.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._tcp.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(START_TIMEOUT)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT)
            self._loop.close()

    def __enter__(self) -> "FakeUpstream":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -------------------------------------------------------------- answering

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply(self, data: bytes, proto: str) -> bytes | None:
        try:
            query = DNSRecord.parse(data)
        except Exception:
            return None
        self.asked.append((str(query.q.qname).lower(), QTYPE.get(query.q.qtype), proto))
        if self.delay:
            await asyncio.sleep(self.delay)
        await self._gate.wait()
        if self.relay_to is not None:
            return await _relay(data, self.relay_to)
        if self.truncate_udp and proto == "udp":
            reply = query.reply()
            reply.header.tc = 1
            return bytes(reply.pack())
        return bytes(resolve(query, self.records).pack())

    async def _answer_udp(self, transport, data: bytes, addr) -> None:
        reply = await self._reply(data, "udp")
        if reply is not None and not transport.is_closing():
            transport.sendto(reply, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tcp_connections += 1
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(2), "big")
                reply = await self._reply(await reader.readexactly(length), "tcp")
                if reply is None:
                    return
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


async def _relay(data: bytes, address: tuple[str, int], timeout: float = 2.0) -> bytes | None:
    """Send ``data`` on to ``address`` and return what comes back (the looping upstream)."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future = loop.create_future()

    class Relay(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            if not reply.done():
                reply.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Relay, remote_addr=address)
    try:
        transport.sendto(data)
        return await asyncio.wait_for(reply, timeout)
    except asyncio.TimeoutError:
        return None
    finally:
        transport.close()


class DnslibUpstream:
    """The test world served by dnslib's own threaded DNSServer (UDP and TCP on one port)."""

    def __init__(self, records=RECORDS):
        self.records = records
        self.asked: list[tuple[str, str, str]] = []
        upstream = self

        class Resolver(BaseResolver):
            def resolve(self, request, handler):
                upstream.asked.append((str(request.q.qname).lower(), QTYPE.get(request.q.qtype), handler.protocol))
                return resolve(request, upstream.records)

        quiet = DNSLogger(log="-request,-reply,-truncated,-error", prefix=False)
        for _ in range(20):
            self.udp = DNSServer(Resolver(), address="127.0.0.1", port=0, logger=quiet)
            self.port = self.udp.server.server_address[1]
            try:
                self.tcp = DNSServer(Resolver(), address="127.0.0.1", port=self.port, tcp=True, logger=quiet)
                break
            except OSError:
                self.udp.server.server_close()
        self.host = "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "DnslibUpstream":
        for server in (self.udp, self.tcp):
            server.start_thread()
            server.thread.name = "test-dnslib-upstream"
        return self

    def stop(self) -> None:
        for server in (self.udp, self.tcp):
            server.stop()
            server.server.server_close()
            server.thread.join(START_TIMEOUT)

    def __enter__(self) -> "DnslibUpstream":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the test world (tests/upstreams.py) on 127.0.0.1.")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    upstream = FakeUpstream(port=args.port).start()
    print(f"test upstream on 127.0.0.1:{upstream.port} (UDP and TCP); Ctrl-C to stop", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        upstream.stop()


if __name__ == "__main__":
    main()
