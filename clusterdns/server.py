"""UDP and TCP listeners on asyncio, in front of a :class:`~clusterdns.wire.Responder`."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field

from . import transfer
from .acl import LOOPBACK, parse_networks
from .wire import Responder

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

    def __init__(self, metrics, zone_label: str):
        self.metrics = metrics
        self.zone_label = zone_label

    def panic(self) -> None:
        if self.metrics is not None:
            self.metrics.count_panic()

    def __call__(self, proto: str, family: str, qtype: int, rcode: int, started: float, size_in: int, size_out: int, hit: bool):
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
            zone=self.zone_label,
            cache_hit=hit,
        )


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
        except Exception:  # never let one packet take the listener down
            log.exception("internal error answering a UDP query from %s", addr)
            self.observe.panic()
            return
        if response is not None:
            self.transport.sendto(response, addr)
        self.observe("udp", self.family, qtype, rcode, started, len(data), len(response or b""), self.responder.hits > hits)

    def error_received(self, exc):
        log.debug("UDP socket error: %s", exc)


@dataclass
class DnsServer:
    """Every listener of one process; :meth:`close` stops them all."""

    responder: Responder
    metrics: object = None
    zone_label: str = "."
    udp: list[asyncio.DatagramTransport] = field(default_factory=list)
    tcp: list[asyncio.base_events.Server] = field(default_factory=list)
    addresses: list[tuple[str, int]] = field(default_factory=list)
    # Who may AXFR the served zones over TCP (--transfer-to); empty: nobody.
    transfer_to: tuple = field(default_factory=lambda: parse_networks(",".join(LOOPBACK), "--transfer-to"))
    _connections: set[asyncio.Task] = field(default_factory=set)

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        """Bind UDP and TCP on (host, port); port 0 picks one free for both."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        observe = _Observer(self.metrics, self.zone_label)
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
        try:
            while True:
                try:
                    prefix = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                    length = int.from_bytes(prefix, "big")
                    data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                started = time.perf_counter()
                if transfer.is_transfer(data):
                    messages = transfer.transfer(self.responder.zone, data, _peer(writer), self.transfer_to)
                    if messages is not None:
                        for message in messages:
                            writer.write(len(message).to_bytes(2, "big") + message)
                            await writer.drain()
                        observe("tcp", family, 252, message[3] & 0x0F, started, len(data), len(message), False)
                        continue
                hits = self.responder.hits
                try:
                    response, qtype, rcode = self.responder.respond(data, udp=False)
                except Exception:
                    log.exception("internal error answering a TCP query")
                    observe.panic()
                    return
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


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return peer[0] if peer else ""
