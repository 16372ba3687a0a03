"""UDP and TCP listeners on asyncio, in front of a :class:`~clusterdns.wire.Responder`."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol

from dnslib import RCODE

from . import transfer
from .acl import LOOPBACK, parse_networks
from .burstlog import BurstLog
from .querylog import QueryLog
from .forward.forwarder import Outcome
from .wire import CHASE, FORWARD, servfail

if TYPE_CHECKING:
    from .zone import Zone

log = logging.getLogger(__name__)
perf_counter = time.perf_counter

LOW_PORTS = 1024  # below: privileged services (echo 7, chargen 19...), never DNS clients but 53
DNS_PORT = 53
FAIR_SHARE = 8  # pipelined TCP queries answered in a row before other clients get a turn
MAX_TCP_PENDING = 64  # forwarded queries of one TCP connection waiting for upstreams at once
FORWARD_ZONE = "."  # the zone label of forwarded queries (CoreDNS: the `.` server block)
# Socket buffers asked for on UDP listeners.  Linux's default receive buffer
# (212992 bytes) holds only a couple of hundred small datagrams on loopback
# (each is charged its ~1 KB skb): dnsperf starting with 200 queries in flight
# lost ~15 of them every run.  The kernel caps this at net.core.rmem_max.
UDP_BUFFER = 4 * 1024 * 1024
UDP_BATCH = 64  # datagrams answered per wake-up before the loop's other work (TCP, timers) gets a turn
MAX_DATAGRAM = 65535


class Answers(Protocol):
    """What the listeners ask of a responder: :class:`~clusterdns.wire.Responder`, or ``clusterdns dev``'s router.

    A responder with an ``autopath`` attribute that is not None is passed each
    query's client address.
    """

    @property
    def zone(self) -> Zone | None:
        """The zone AXFR/IXFR transfers; None: transfers are answered as other queries."""
        ...

    def respond(self, data: bytes, udp: bool, client: str | None = None) -> tuple[bytes | None, int, int, bool]: ...


def parse_listen(text: str, flag: str = "--listen") -> tuple[str, int]:
    """``127.0.0.1:5353``, ``[::1]:53``, ``:53`` (all IPv4) → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{flag} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:5353 or [::1]:5353")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _udp_socket(host: str, port: int, family: int, reuse_port: bool = False) -> socket.socket:
    """A bound UDP socket; IPv6 ones are v6-only, so ``[::]:53`` and ``0.0.0.0:53`` can both be bound.

    ``reuse_port``: SO_REUSEPORT, so ``--workers`` processes share the port and
    the kernel spreads queries over them.
    """
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        _grow_buffers(sock)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _grow_buffers(sock: socket.socket) -> None:
    """Ask for UDP_BUFFER bytes of receive and send buffer (a burst of queries waits there, not dropped)."""
    for option, name in ((socket.SO_RCVBUF, "receive"), (socket.SO_SNDBUF, "send")):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER)
        except OSError as exc:  # not fatal: the default buffer still works, only smaller
            log.debug("UDP %s buffer left at its default: %s", name, exc)
            continue
        # Linux reports twice what it granted (the bookkeeping overhead), capped by net.core.[rw]mem_max.
        log.debug("UDP %s buffer: asked %d bytes, granted %d", name, UDP_BUFFER, sock.getsockopt(socket.SOL_SOCKET, option))


class _Observer:
    """Hands each query's outcome to the metrics, if any (kept off the hot path otherwise)."""

    def __init__(self, metrics, zone_label: str, errors: BurstLog):
        self.metrics = metrics
        self.zone_label = zone_label
        self.errors = errors
        self._recorders: dict[tuple[str, str], Callable] = {}

    def recorder(self, proto: str, family: str) -> Callable | None:
        """The metrics' recorder for one listener's zone answers: ``(qtype, rcode, hit, duration_s, size_in, size_out)``.

        The labels a listener knows are fixed in it, so the UDP path makes one
        call per query (about 0.5 µs instead of 2).  None without metrics.
        """
        if self.metrics is None:
            return None
        key = (proto, family)
        if key not in self._recorders:
            self._recorders[key] = self.metrics.query_observer(proto, family, self.zone_label)
        return self._recorders[key]

    def panic(self, proto: str, addr, exc: Exception) -> None:
        """An exception answering one query: counted, and logged once per burst (call it in the except block)."""
        if self.metrics is not None:
            self.metrics.count_panic()
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno) if tb is not None else None
        client = f"{addr[0]} port {addr[1]}" if addr else "?"
        self.errors.report(
            ("panic", proto, type(exc).__name__, where),  # one burst per bug and transport, not per client
            f"internal error answering a {proto.upper()} query from {client}: {type(exc).__name__}: {exc}; "
            "answered SERVFAIL (a bug: please report it with this traceback)",
            exc_info=True,
        )

    def __call__(self, proto: str, family: str, qtype: int, rcode: int, started: float, query: bytes,
                 response: bytes | None, hit, addr, zone: str | None = None, plugin: str = "kubernetes") -> None:
        if self.metrics is None:
            return
        if zone is None and plugin == "kubernetes":
            record = self.recorder(proto, family)
            assert record is not None  # there are metrics
            record(qtype, rcode, hit, perf_counter() - started, len(query), len(response) if response is not None else 0)
            return
        self.metrics.observe_query(
            proto=proto,
            family=family,
            qtype=qtype,
            rcode=rcode,
            duration_s=time.perf_counter() - started,
            request_size=len(query),
            response_size=len(response) if response is not None else 0,
            zone=zone or self.zone_label,
            cache_hit=hit,
            plugin=plugin,
        )


class _LoggingObserver(_Observer):
    """The observer when ``--log-queries`` is on: metrics, then one log line per answered query."""

    def __init__(self, metrics, zone_label: str, errors: BurstLog, query_log: QueryLog):
        super().__init__(metrics, zone_label, errors)
        self.query_log = query_log

    def __call__(self, proto, family, qtype, rcode, started, query, response, hit, addr, zone=None, plugin="kubernetes"):
        super().__call__(proto, family, qtype, rcode, started, query, response, hit, addr, zone, plugin)
        if response is not None:
            self.query_log(proto, addr, query, response, started)


class _Forwarding:
    """The async side branch: queries the zone handed over (FORWARD, CHASE) answered by the forwarder."""

    def __init__(self, forwarder, observe: _Observer):
        self.forwarder = forwarder
        self.observe = observe
        self.tasks: set[asyncio.Task] = set()

    def answer_now(self, data: bytes, rcode: int, udp: bool):
        """A forwarded answer from the forward cache without waiting, or None."""
        return self.forwarder.answer_cached(data, udp) if rcode == FORWARD else None

    async def answer(self, data: bytes, response: bytes | None, rcode: int, udp: bool):
        """(outcome, zone label): the forwarder's answer to a query the zone handed over."""
        if rcode == CHASE:
            assert response is not None  # a CHASE carries the cluster's answer, to complete
            return await self.forwarder.chase(response, data, udp), None
        return await self.forwarder.forward(data, udp), FORWARD_ZONE

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def record(self, proto, family, qtype, outcome, zone, started, query: bytes, addr) -> None:
        plugin = "forward" if zone else "kubernetes"
        self.observe(proto, family, qtype, outcome.rcode, started, query, outcome.response, outcome.cache_hit, addr,
                     zone, plugin)


class _UdpListener:
    """One UDP socket answered on the event loop with plain ``recvfrom``/``sendto``.

    Each time the socket is readable, up to UDP_BATCH datagrams are read and
    answered in one callback.  Against asyncio's (or uvloop's) datagram
    transport this saves the address conversions and the protocol callback of
    every datagram: about 0.6 µs of the ~7.3 µs CPU a cached answer cost (see
    docs/benchmark.md).  Everything runs on the loop's thread, like the zone's
    commits, so a query is answered from one consistent state.
    """

    def __init__(
        self, sock: socket.socket, responder: Answers, observe: _Observer, family: str, lowest_port: int,
        forwarding: _Forwarding | None = None,
    ):
        self.sock = sock
        self.observe = observe
        self.family = family
        self.lowest_port = lowest_port  # 1, or LOW_PORTS with --drop-low-source-ports
        # The server's side branch.  A listener made on its own gets one without a forwarder: its
        # responder hands nothing over then (Responder.forwarding is off without a forwarder).
        self.forwarding = forwarding if forwarding is not None else _Forwarding(None, observe)
        # Metrics only (no query log): record straight into them, one call per query.
        self.record = observe.recorder("udp", family) if type(observe) is _Observer else None
        self.use(responder)
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    def use(self, responder: Answers) -> None:
        self.responder = responder
        self.autopath = getattr(responder, "autopath", None) is not None  # only then is the client's address passed on

    @property
    def sockname(self):
        return self.sock.getsockname()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def _readable(self) -> None:
        recvfrom, sendto = self.sock.recvfrom, self.sock.sendto
        respond, autopath, record, lowest_port = self.responder.respond, self.autopath, self.record, self.lowest_port
        for _ in range(UDP_BATCH):
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                return  # all read
            except OSError as exc:
                log.debug("UDP socket error: %s", exc)
                return
            if addr[1] < lowest_port and addr[1] != DNS_PORT:
                continue  # port 0 is spoofed; a low port is a service that would answer our answer (a loop)
            started = perf_counter()
            try:
                if autopath:
                    response, qtype, rcode, hit = respond(data, True, addr[0])
                else:
                    response, qtype, rcode, hit = respond(data, True)
            except Exception as exc:  # never let one packet take the listener down
                self.observe.panic("udp", addr, exc)
                response, qtype, rcode, hit = servfail(data), 0, RCODE.SERVFAIL, False
            if rcode < 0:  # FORWARD or CHASE: off the zone's path
                self._forward(data, response, qtype, rcode, addr, started)
                continue
            if response is not None:
                try:  # (written out, not self.sendto: this runs for every answer)
                    sendto(response, addr)
                except OSError as exc:
                    self._unsent(addr, exc)
            if record is not None:
                record(qtype, rcode, hit, perf_counter() - started, len(data), len(response) if response else 0)
            elif type(self.observe) is not _Observer:  # the query log (a bare _Observer without metrics has nothing to do)
                self.observe("udp", self.family, qtype, rcode, started, data, response, hit, addr)

    def sendto(self, response: bytes, addr) -> None:
        try:
            self.sock.sendto(response, addr)
        except OSError as exc:
            self._unsent(addr, exc)

    @staticmethod
    def _unsent(addr, exc: OSError) -> None:
        # A full send buffer (BlockingIOError) or an unreachable client: the reply is lost, as UDP may lose it.
        log.debug("UDP reply to %s port %s not sent: %s", addr[0], addr[1], exc)

    def _forward(self, data: bytes, response: bytes | None, qtype: int, rcode: int, addr, started: float) -> None:
        forwarding = self.forwarding
        outcome = forwarding.answer_now(data, rcode, True)
        if outcome is not None:
            self.sendto(outcome.response, addr)
            forwarding.record("udp", self.family, qtype, outcome, FORWARD_ZONE, started, data, addr)
            return
        forwarding.spawn(self._forward_later(data, response, qtype, rcode, addr, started))

    async def _forward_later(self, data: bytes, response: bytes | None, qtype: int, rcode: int, addr, started: float):
        try:
            outcome, zone = await self.forwarding.answer(data, response, rcode, True)
        except Exception as exc:  # a bug: SERVFAIL, never silence
            self.observe.panic("udp", addr, exc)
            outcome, zone = Outcome(servfail(data), RCODE.SERVFAIL, None), FORWARD_ZONE
        if outcome.response is not None and not self.closed:
            self.sendto(outcome.response, addr)
        self.forwarding.record("udp", self.family, qtype, outcome, zone, started, data, addr)


@dataclass(frozen=True)
class TcpLimits:
    """What one TCP client may hold (RFC 7766 6.2: servers manage their connections)."""

    idle_timeout: float = 10.0  # seconds between queries, and for a query's bytes to arrive (CoreDNS: 10 s)
    write_timeout: float = 5.0  # seconds for a client to take replies queued beyond max_queued_bytes
    max_connections: int = 1000  # at the limit, the connection idle longest is closed for a new one
    max_queued_bytes: int = 64 * 1024  # replies waiting for a client that does not read: stop reading it


@dataclass
class _Connection:
    writer: asyncio.StreamWriter
    task: asyncio.Task
    last_active: float  # monotonic time of its last whole query read or reply taken
    queries: int = 0


@dataclass
class DnsServer:
    """Every listener of one process; :meth:`close` stops them all."""

    responder: Answers
    metrics: object = None
    zone_label: str = "."
    query_log: QueryLog | None = None  # --log-queries
    forwarder: object = None  # a clusterdns.forward.Forwarder when the server forwards
    tcp_limits: TcpLimits = field(default_factory=TcpLimits)
    drop_low_source_ports: bool = False
    reuse_port: bool = False  # SO_REUSEPORT on every socket: --workers processes share the ports
    udp: list[_UdpListener] = field(default_factory=list)
    tcp: list[asyncio.base_events.Server] = field(default_factory=list)
    addresses: list[tuple[str, int]] = field(default_factory=list)
    # Who may AXFR the served zones over TCP (--transfer-to); empty: nobody.
    transfer_to: tuple = field(default_factory=lambda: parse_networks(",".join(LOOPBACK), "--transfer-to"))
    errors: BurstLog = field(default_factory=lambda: BurstLog(log))
    _connections: dict[asyncio.Task, _Connection] = field(default_factory=dict)  # counted against the limit
    _handlers: set[asyncio.Task] = field(default_factory=set)  # every TCP task still running, evicted ones too
    _flusher: asyncio.Task | None = None
    _forwarding: _Forwarding | None = None

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        """Bind UDP and TCP on (host, port); port 0 picks one free for both."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if self.query_log is None:
            observe = _Observer(self.metrics, self.zone_label, self.errors)
        else:
            observe = _LoggingObserver(self.metrics, self.zone_label, self.errors, self.query_log)
        if self._forwarding is None:  # one per server: a reload may swap its forwarder (see use)
            self._forwarding = _Forwarding(self.forwarder, observe)
        forwarding = self._forwarding
        fam = "2" if family == socket.AF_INET6 else "1"  # CoreDNS's family label: 1 IPv4, 2 IPv6
        lowest_port = LOW_PORTS if self.drop_low_source_ports else 1
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_errors(), name="clusterdns-burstlog")
        for attempt in range(20):
            udp = _UdpListener(_udp_socket(host, port, family, self.reuse_port), self.responder, observe, fam,
                               lowest_port, forwarding)
            bound_port = udp.sockname[1]
            try:
                server = await asyncio.start_server(
                    lambda r, w: self._serve_tcp(r, w, observe, forwarding, fam), host, bound_port, family=family,
                    reuse_address=True, reuse_port=self.reuse_port or None,
                )
            except OSError:
                udp.close()
                if port != 0 or attempt == 19:
                    raise
                continue  # the UDP port's TCP twin was taken: try another
            self.udp.append(udp)
            self.tcp.append(server)
            self.addresses.append((host, bound_port))
            log.info("listening on %s port %d (UDP and TCP)", host, bound_port)
            return host, bound_port
        raise OSError("no free port")

    def use(self, responder: Answers, forwarder=None) -> None:
        """Answer from ``responder`` (and forward with ``forwarder``) from the next query on (a reload's swap)."""
        self.responder = responder
        self.forwarder = forwarder
        if self._forwarding is not None:
            self._forwarding.forwarder = forwarder
        for udp in self.udp:
            udp.use(responder)

    async def close_listener(self, address: tuple[str, int]) -> None:
        """Stop the UDP and TCP listener bound to ``address``; the others keep answering."""
        i = self.addresses.index(address)
        self.udp.pop(i).close()
        server = self.tcp.pop(i)
        self.addresses.pop(i)
        server.close()  # open connections finish their queries; close() reaps them at the end
        log.info("stopped listening on %s port %d", *address)

    async def _flush_errors(self) -> None:
        while True:  # so a burst that stopped is still reported with its count
            await asyncio.sleep(self.errors.interval / 2)
            self.errors.flush()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, observe: _Observer,
                         forwarding: _Forwarding, family: str):
        limits = self.tcp_limits
        task = asyncio.current_task()
        assert task is not None  # asyncio.start_server runs each connection's handler in its own task
        if len(self._connections) >= limits.max_connections:
            self._close_longest_idle()
        conn = self._connections[task] = _Connection(writer, task, time.monotonic())
        self._handlers.add(task)
        writer.transport.set_write_buffer_limits(high=limits.max_queued_bytes)
        peer = writer.get_extra_info("peername")
        pending: set[asyncio.Task] = set()  # forwarded queries of this connection; replies may overtake them
        try:
            while True:
                try:
                    async with asyncio.timeout(limits.idle_timeout):
                        prefix = await reader.readexactly(2)
                        data = await reader.readexactly(int.from_bytes(prefix, "big"))
                except (asyncio.IncompleteReadError, TimeoutError):
                    if pending:  # the client may be waiting for them: answer before closing (bounded upstream)
                        await asyncio.wait(pending)
                    return
                conn.last_active = time.monotonic()
                conn.queries += 1
                if conn.queries % FAIR_SHARE == 0:
                    # Queries already buffered are read without waiting, so a client that
                    # pipelines thousands would hold the loop: let the others have a turn.
                    await asyncio.sleep(0)
                started = time.perf_counter()
                if transfer.is_transfer(data):
                    messages = transfer.transfer(self.responder.zone, data, _peer(writer), self.transfer_to)
                    if messages is not None:
                        for message in messages:
                            if not await self._send(writer, message, conn):
                                return
                        observe("tcp", family, 252, message[3] & 0x0F, started, data, message, False, peer)
                        continue
                try:
                    if getattr(self.responder, "autopath", None) is not None:
                        response, qtype, rcode, hit = self.responder.respond(data, False, _peer(writer))
                    else:
                        response, qtype, rcode, hit = self.responder.respond(data, False)
                except Exception as exc:
                    observe.panic("tcp", peer, exc)
                    response, qtype, rcode, hit = servfail(data), 0, RCODE.SERVFAIL, False
                if rcode < 0:  # FORWARD or CHASE: answered when the upstream is (RFC 7766: out of order)
                    if len(pending) >= MAX_TCP_PENDING:
                        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    forwarded = forwarding.spawn(
                        self._forward_tcp(forwarding, writer, conn, data, response, qtype, rcode, observe, family,
                                          started, peer)
                    )
                    pending.add(forwarded)
                    forwarded.add_done_callback(pending.discard)
                    continue
                if response is None or not await self._send(writer, response, conn):
                    return
                observe("tcp", family, qtype, rcode, started, data, response, hit, peer)
        except ConnectionError:
            pass  # reset by the client
        except asyncio.CancelledError:
            # close() (or eviction) cancels us and waits for us.  Ending normally matters on
            # Python 3.11: asyncio's streams callback calls task.exception() on the finished
            # handler, which raises (and is logged with a traceback) for a cancelled one.
            pass
        finally:
            self._connections.pop(task, None)
            self._handlers.discard(task)
            writer.transport.abort()  # never wait on a client that may not read

    async def _forward_tcp(self, forwarding: _Forwarding, writer, conn, data: bytes, response: bytes | None,
                           qtype: int, rcode: int, observe: _Observer, family, started: float, peer) -> None:
        try:
            outcome, zone = await forwarding.answer(data, response, rcode, False)
        except Exception as exc:  # a bug: SERVFAIL, never silence
            observe.panic("tcp", peer, exc)
            outcome, zone = Outcome(servfail(data), RCODE.SERVFAIL, None), FORWARD_ZONE
        if outcome.response is not None and await self._send(writer, outcome.response, conn):
            forwarding.record("tcp", family, qtype, outcome, zone, started, data, peer)

    async def _send(self, writer: asyncio.StreamWriter, message: bytes, conn: _Connection) -> bool:
        """Queue one framed message; False if the client is gone or would not take its replies."""
        if writer.transport.is_closing():
            return False  # reset by the client: writing would raise (uvloop) or warn (asyncio)
        writer.write(len(message).to_bytes(2, "big") + message)
        if writer.transport.get_write_buffer_size() > self.tcp_limits.max_queued_bytes:
            # The client is not reading its replies: read nothing more from it
            # until it does, and give up on it after write_timeout.
            try:
                async with asyncio.timeout(self.tcp_limits.write_timeout):
                    await writer.drain()
            except TimeoutError:
                return False
            conn.last_active = time.monotonic()
        return True

    def _close_longest_idle(self) -> None:
        """Make room for a new connection: drop the one that has made no progress the longest."""
        oldest = min(self._connections.values(), key=lambda c: c.last_active)
        del self._connections[oldest.task]
        oldest.writer.transport.abort()  # its task sees the connection lost and ends

    async def close(self) -> None:
        for udp in self.udp:
            udp.close()
        for server in self.tcp:
            server.close()
        tasks = list(self._handlers) + (list(self._forwarding.tasks) if self._forwarding else [])
        if self._flusher is not None:
            tasks.append(self._flusher)
            self._flusher = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.errors.flush(everything=True)  # a burst cut short by the stop still reports its count
        for server in self.tcp:
            await server.wait_closed()
        self.udp.clear()
        self.tcp.clear()


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return peer[0] if peer else ""
