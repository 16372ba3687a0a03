"""UDP and TCP listeners on asyncio, in front of a :class:`~clusterdns.wire.Responder`."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field

from dnslib import RCODE

from .burstlog import BurstLog
from .querylog import QueryLog
from .wire import Responder, servfail

log = logging.getLogger(__name__)

TCP_IDLE_TIMEOUT = 10.0  # seconds a TCP connection may sit between queries (CoreDNS: 10 s)
MAX_TCP_CONNECTIONS = 1000


def parse_listen(text: str, flag: str = "--listen") -> tuple[str, int]:
    """``127.0.0.1:5353``, ``[::1]:53``, ``:53`` (all IPv4) → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{flag} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:5353 or [::1]:5353")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _udp_socket(host: str, port: int, family: int) -> socket.socket:
    """A bound UDP socket; IPv6 ones are v6-only, so ``[::]:53`` and ``0.0.0.0:53`` can both be bound."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Observer:
    """Hands each query's outcome to the metrics, if any (kept off the hot path otherwise)."""

    def __init__(self, metrics, zone_label: str, errors: BurstLog):
        self.metrics = metrics
        self.zone_label = zone_label
        self.errors = errors

    def panic(self, proto: str, addr, exc: Exception) -> None:
        """An exception answering one query: counted, and logged once per burst (call it in the except block)."""
        if self.metrics is not None:
            self.metrics.count_panic()
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno) if tb is not None else None
        client = addr[0] if addr else "?"
        self.errors.report(
            ("panic", type(exc).__name__, where),  # one burst per bug, not per client or name
            f"internal error answering a {proto.upper()} query from {client}: {type(exc).__name__}: {exc}; "
            "answered SERVFAIL (a bug: please report it with this traceback)",
            exc_info=True,
        )

    def __call__(self, proto: str, family: str, qtype: int, rcode: int, started: float, query: bytes,
                 response: bytes | None, hit: bool, addr) -> None:
        if self.metrics is None:
            return
        self.metrics.observe_query(
            proto=proto,
            family=family,
            qtype=qtype,
            rcode=rcode,
            duration_s=time.perf_counter() - started,
            request_size=len(query),
            response_size=len(response) if response is not None else 0,
            zone=self.zone_label,
            cache_hit=hit,
        )


class _LoggingObserver(_Observer):
    """The observer when ``--log-queries`` is on: metrics, then one log line per answered query."""

    def __init__(self, metrics, zone_label: str, errors: BurstLog, query_log: QueryLog):
        super().__init__(metrics, zone_label, errors)
        self.query_log = query_log

    def __call__(self, proto, family, qtype, rcode, started, query, response, hit, addr) -> None:
        super().__call__(proto, family, qtype, rcode, started, query, response, hit, addr)
        if response is not None:
            self.query_log(proto, addr, query, response, started)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder, observe: _Observer, family: str):
        self.responder = responder
        self.observe = observe
        self.family = family
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data: bytes, addr):
        started = time.perf_counter()
        hits = self.responder.hits
        try:
            response, qtype, rcode = self.responder.respond(data, udp=True)
        except Exception as exc:  # never let one packet take the listener down
            self.observe.panic("udp", addr, exc)
            response, qtype, rcode = servfail(data), 0, RCODE.SERVFAIL
        if response is not None:
            self.transport.sendto(response, addr)
        self.observe("udp", self.family, qtype, rcode, started, data, response, self.responder.hits > hits, addr)

    def error_received(self, exc):
        log.debug("UDP socket error: %s", exc)


@dataclass
class DnsServer:
    """Every listener of one process; :meth:`close` stops them all."""

    responder: Responder
    metrics: object = None
    zone_label: str = "."
    query_log: QueryLog | None = None  # --log-queries
    errors: BurstLog = field(default_factory=lambda: BurstLog(log))  # internal errors, once per burst; flush() it
    udp: list[asyncio.DatagramTransport] = field(default_factory=list)
    tcp: list[asyncio.base_events.Server] = field(default_factory=list)
    addresses: list[tuple[str, int]] = field(default_factory=list)
    _connections: set[asyncio.Task] = field(default_factory=set)

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        """Bind UDP and TCP on (host, port); port 0 picks one free for both."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if self.query_log is None:
            observe = _Observer(self.metrics, self.zone_label, self.errors)
        else:
            observe = _LoggingObserver(self.metrics, self.zone_label, self.errors, self.query_log)
        fam = "2" if family == socket.AF_INET6 else "1"  # CoreDNS's family label: 1 IPv4, 2 IPv6
        for attempt in range(20):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self.responder, observe, fam), sock=_udp_socket(host, port, family)
            )
            bound_port = transport.get_extra_info("sockname")[1]
            try:
                server = await asyncio.start_server(
                    lambda r, w: self._serve_tcp(r, w, observe, fam), host, bound_port, family=family, reuse_address=True
                )
            except OSError:
                transport.close()
                if port != 0 or attempt == 19:
                    raise
                continue  # the UDP port's TCP twin was taken: try another
            self.udp.append(transport)
            self.tcp.append(server)
            self.addresses.append((host, bound_port))
            log.info("listening on %s port %d (UDP and TCP)", host, bound_port)
            return host, bound_port
        raise OSError("no free port")

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, observe, family: str):
        task = asyncio.current_task()
        if len(self._connections) >= MAX_TCP_CONNECTIONS:
            writer.close()
            return
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        try:
            while True:
                try:
                    prefix = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                    length = int.from_bytes(prefix, "big")
                    data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                started = time.perf_counter()
                hits = self.responder.hits
                try:
                    response, qtype, rcode = self.responder.respond(data, udp=False)
                except Exception as exc:
                    observe.panic("tcp", peer, exc)
                    response, qtype, rcode = servfail(data), 0, RCODE.SERVFAIL
                if response is None:
                    return
                writer.write(len(response).to_bytes(2, "big") + response)
                await writer.drain()
                observe("tcp", family, qtype, rcode, started, data, response, self.responder.hits > hits, peer)
        except ConnectionError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def close(self) -> None:
        for transport in self.udp:
            transport.close()
        for server in self.tcp:
            server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self.tcp:
            await server.wait_closed()
        self.udp.clear()
        self.tcp.clear()
