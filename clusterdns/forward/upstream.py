"""One upstream DNS server: a query over UDP, again over TCP when truncated; pooled TCP; health.

UDP uses a fresh socket (so a fresh source port) per query and takes only a
reply with our ID and question.  TCP connections are kept after use and
reused by the next query that needs one; one idle for ``tcp_idle`` seconds is
closed.  A failed exchange marks the upstream down; the forwarder then checks
it with ``. IN NS`` until any response comes back (CoreDNS's health check:
any rcode counts as alive).
"""

from __future__ import annotations

import asyncio
import struct

from .message import matches, upstream_query
from .settings import Address, format_address

MAX_IDLE_CONNECTIONS = 8  # per upstream
ROOT_NS = b"\x00\x00\x02\x00\x01"  # ". IN NS"


class _UdpExchange(asyncio.DatagramProtocol):
    def __init__(self, qid: int, question: bytes):
        self.qid = qid
        self.question = question
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.reply.done() and matches(data, self.qid, self.question):
            self.reply.set_result(data)  # anything else (spoofed, late) is ignored

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)  # e.g. ICMP port unreachable: the port is closed

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc or ConnectionError("socket closed"))


class Upstream:
    def __init__(self, address: Address, payload: int = 1232, tcp_idle: float = 10.0):
        self.address = address
        self.label = format_address(address)  # the `to` label of the forward metrics
        self.payload = payload
        self.tcp_idle = tcp_idle
        self.healthy = True
        self.checking: asyncio.Task | None = None  # the health check while down
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.TimerHandle]] = []

    def __repr__(self) -> str:
        return f"Upstream({self.label})"

    async def exchange(self, question: bytes, do: bool, cd: bool, timeout: float) -> tuple[bytes, str]:
        """(reply, "udp" or "tcp") for ``question``; TimeoutError or OSError when the upstream fails."""
        qid, query = upstream_query(question, do, cd, self.payload)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        reply = await self._udp(qid, question, query, timeout)
        if not reply[2] & 0x02:  # TC clear
            return reply, "udp"
        return await self._tcp(qid, question, query, max(0.01, deadline - loop.time())), "tcp"

    async def _udp(self, qid: int, question: bytes, query: bytes, timeout: float) -> bytes:
        loop = asyncio.get_running_loop()
        host, port = self.address
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _UdpExchange(qid, question), remote_addr=(host, port)
        )
        try:
            transport.sendto(query)
            return await asyncio.wait_for(protocol.reply, timeout)
        finally:
            transport.close()

    async def _tcp(self, qid: int, question: bytes, query: bytes, timeout: float) -> bytes:
        return await asyncio.wait_for(self._tcp_exchange(qid, question, query), timeout)

    async def _tcp_exchange(self, qid: int, question: bytes, query: bytes) -> bytes:
        connection = self._take_idle()
        if connection is not None:
            try:
                return await self._over(connection, qid, question, query)
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                pass  # the upstream closed it while idle: one retry on a new connection
        reader, writer = await asyncio.open_connection(*self.address)
        return await self._over((reader, writer), qid, question, query)

    async def _over(self, connection, qid: int, question: bytes, query: bytes) -> bytes:
        reader, writer = connection
        try:
            writer.write(struct.pack("!H", len(query)) + query)
            await writer.drain()
            length = int.from_bytes(await reader.readexactly(2), "big")
            reply = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if not matches(reply, qid, question):
            writer.close()
            raise ConnectionError("reply over TCP does not match the query")
        self._give_back(reader, writer)
        return reply

    def _take_idle(self):
        while self._idle:
            reader, writer, timer = self._idle.pop()
            timer.cancel()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    def _give_back(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._idle) >= MAX_IDLE_CONNECTIONS:
            writer.close()
            return
        loop = asyncio.get_running_loop()
        entry: list = []
        timer = loop.call_later(self.tcp_idle, self._expire, entry)
        entry.append((reader, writer, timer))
        self._idle.append(entry[0])

    def _expire(self, entry: list) -> None:
        item = entry[0]
        if item in self._idle:
            self._idle.remove(item)
            item[1].close()

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def check(self, timeout: float) -> bool:
        """One health check: does ``. IN NS`` get any response?"""
        try:
            await self.exchange(ROOT_NS, False, False, timeout)
            return True
        except (OSError, asyncio.TimeoutError, ValueError):
            return False

    def close(self) -> None:
        for _, writer, timer in self._idle:
            timer.cancel()
            writer.close()
        self._idle.clear()
        if self.checking is not None:
            self.checking.cancel()
