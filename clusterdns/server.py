"""UDP and TCP listeners on asyncio, in front of a :class:`~clusterdns.wire.Responder`."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field

from .wire import CHASE, FORWARD, Responder

log = logging.getLogger(__name__)

TCP_IDLE_TIMEOUT = 10.0  # seconds a TCP connection may sit between queries (CoreDNS: 10 s)
MAX_TCP_CONNECTIONS = 1000
MAX_TCP_PENDING = 64  # forwarded queries of one TCP connection waiting for upstreams at once
FORWARD_ZONE = "."  # the zone label of forwarded queries (CoreDNS: the `.` server block)


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

    def __init__(self, metrics, zone_label: str):
        self.metrics = metrics
        self.zone_label = zone_label

    def panic(self) -> None:
        if self.metrics is not None:
            self.metrics.count_panic()

    def __call__(
        self, proto: str, family: str, qtype: int, rcode: int, started: float, size_in: int, size_out: int, hit,
        zone: str | None = None, plugin: str = "kubernetes",
    ):
        if self.metrics is None:
            return
        self.metrics.observe_query(
            proto=proto,
            family=family,
            qtype=qtype,
            rcode=rcode,
            duration_s=time.perf_counter() - started,
            request_size=size_in,
            response_size=size_out,
            zone=zone or self.zone_label,
            cache_hit=hit,
            plugin=plugin,
        )


class _Forwarding:
    """The async side branch: queries the zone handed over (FORWARD, CHASE) answered by the forwarder."""

    def __init__(self, forwarder, observe: _Observer):
        self.forwarder = forwarder
        self.observe = observe
        self.tasks: set[asyncio.Task] = set()

    def answer_now(self, data: bytes, response: bytes, rcode: int, udp: bool):
        """A forwarded answer from the forward cache without waiting, or None."""
        return self.forwarder.answer_cached(data, udp) if rcode == FORWARD else None

    async def answer(self, data: bytes, response: bytes, rcode: int, udp: bool):
        if rcode == CHASE:
            return await self.forwarder.chase(response, data, udp), None
        return await self.forwarder.forward(data, udp), FORWARD_ZONE

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def record(self, proto, family, qtype, outcome, zone, started, size_in) -> None:
        plugin = "forward" if zone else "kubernetes"
        self.observe(
            proto, family, qtype, outcome.rcode, started, size_in, len(outcome.response or b""),
            outcome.cache_hit, zone=zone, plugin=plugin,
        )


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder, observe: _Observer, family: str, forwarding: _Forwarding | None):
        self.responder = responder
        self.observe = observe
        self.family = family
        self.forwarding = forwarding
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data: bytes, addr):
        started = time.perf_counter()
        hits = self.responder.hits
        try:
            response, qtype, rcode = self.responder.respond(data, udp=True)
        except Exception:  # never let one packet take the listener down
            log.exception("internal error answering a UDP query from %s", addr)
            self.observe.panic()
            return
        if rcode < 0:  # FORWARD or CHASE: off the zone's path
            self._forward(data, response, qtype, rcode, addr, started)
            return
        if response is not None:
            self.transport.sendto(response, addr)
        self.observe("udp", self.family, qtype, rcode, started, len(data), len(response or b""), self.responder.hits > hits)

    def _forward(self, data: bytes, response: bytes, qtype: int, rcode: int, addr, started: float) -> None:
        forwarding = self.forwarding
        outcome = forwarding.answer_now(data, response, rcode, True)
        if outcome is not None:
            self.transport.sendto(outcome.response, addr)
            forwarding.record("udp", self.family, qtype, outcome, FORWARD_ZONE, started, len(data))
            return
        forwarding.spawn(self._forward_later(data, response, qtype, rcode, addr, started))

    async def _forward_later(self, data: bytes, response: bytes, qtype: int, rcode: int, addr, started: float):
        try:
            outcome, zone = await self.forwarding.answer(data, response, rcode, True)
        except Exception:
            log.exception("internal error forwarding a UDP query from %s", addr)
            self.observe.panic()
            return
        if outcome.response is not None and not self.transport.is_closing():
            self.transport.sendto(outcome.response, addr)
        self.forwarding.record("udp", self.family, qtype, outcome, zone, started, len(data))

    def error_received(self, exc):
        log.debug("UDP socket error: %s", exc)


@dataclass
class DnsServer:
    """Every listener of one process; :meth:`close` stops them all."""

    responder: Responder
    metrics: object = None
    zone_label: str = "."
    forwarder: object = None  # a clusterdns.forward.Forwarder when the server forwards
    udp: list[asyncio.DatagramTransport] = field(default_factory=list)
    tcp: list[asyncio.base_events.Server] = field(default_factory=list)
    addresses: list[tuple[str, int]] = field(default_factory=list)
    _connections: set[asyncio.Task] = field(default_factory=set)
    _forwarding: _Forwarding | None = None

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        """Bind UDP and TCP on (host, port); port 0 picks one free for both."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        observe = _Observer(self.metrics, self.zone_label)
        if self.forwarder is not None and self._forwarding is None:
            self._forwarding = _Forwarding(self.forwarder, observe)
        forwarding = self._forwarding
        fam = "2" if family == socket.AF_INET6 else "1"  # CoreDNS's family label: 1 IPv4, 2 IPv6
        for attempt in range(20):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self.responder, observe, fam, forwarding), sock=_udp_socket(host, port, family)
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
        pending: set[asyncio.Task] = set()  # forwarded queries of this connection; replies may overtake them
        try:
            while True:
                try:
                    prefix = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                    length = int.from_bytes(prefix, "big")
                    data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    if pending:  # the client may have sent its last query: answer it first
                        await asyncio.wait(pending)
                    return
                started = time.perf_counter()
                hits = self.responder.hits
                try:
                    response, qtype, rcode = self.responder.respond(data, udp=False)
                except Exception:
                    log.exception("internal error answering a TCP query")
                    observe.panic()
                    return
                if rcode < 0:  # FORWARD or CHASE: answered when the upstream is (RFC 7766: out of order)
                    if len(pending) >= MAX_TCP_PENDING:
                        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    forwarded = self._forwarding.spawn(
                        self._forward_tcp(writer, data, response, qtype, rcode, observe, family, started)
                    )
                    pending.add(forwarded)
                    forwarded.add_done_callback(pending.discard)
                    continue
                if response is None:
                    return
                writer.write(len(response).to_bytes(2, "big") + response)
                await writer.drain()
                observe("tcp", family, qtype, rcode, started, len(data), len(response), self.responder.hits > hits)
        except ConnectionError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _forward_tcp(self, writer, data: bytes, response: bytes, qtype: int, rcode: int, observe, family, started):
        forwarding = self._forwarding
        try:
            outcome, zone = await forwarding.answer(data, response, rcode, False)
        except Exception:
            log.exception("internal error forwarding a TCP query")
            observe.panic()
            return
        if outcome.response is None or writer.is_closing():
            return
        writer.write(len(outcome.response).to_bytes(2, "big") + outcome.response)
        forwarding.record("tcp", family, qtype, outcome, zone, started, len(data))

    async def close(self) -> None:
        for transport in self.udp:
            transport.close()
        for server in self.tcp:
            server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._forwarding is not None:
            for task in list(self._forwarding.tasks):
                task.cancel()
            await asyncio.gather(*self._forwarding.tasks, return_exceptions=True)
        for server in self.tcp:
            await server.wait_closed()
        self.udp.clear()
        self.tcp.clear()
