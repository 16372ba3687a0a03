"""Hostile clients through real sockets: spoofed source ports, a query that makes the server fail, TCP abuse."""

from __future__ import annotations

import logging
import socket
import struct
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clusterdns.burstlog import BurstLog
from clusterdns.events import Upsert
from clusterdns.metrics import Metrics
from clusterdns.server import UDP_BATCH, TcpLimits, _Observer, _udp_socket, _UdpListener

from .builders import endpoint_slice, service
from .conftest import ZONES
from .dnsserver import RunningServer, answers

WEB = "web.default.svc.cluster.local"


def _web(srv: RunningServer) -> None:
    srv.call(srv.dns.sink, [Upsert(service("web"))])


def wait_for(condition, timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``condition`` (cheap, over sockets or the server's state) until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# --- source ports ------------------------------------------------------------------


class _Datagrams:
    """A listener's socket that delivers the given datagrams (from any source port) and records where replies went."""

    def __init__(self, real: socket.socket, datagrams):
        self.real = real
        self.datagrams = list(datagrams)
        self.sent = []

    def recvfrom(self, size):
        if not self.datagrams:
            raise BlockingIOError
        return self.datagrams.pop(0)

    def sendto(self, data, addr):
        self.sent.append(addr)

    def fileno(self):
        return self.real.fileno()

    def close(self):
        self.real.close()


@pytest.mark.parametrize("drop_low", [False, True])
@pytest.mark.parametrize("port", [0, 7, 19, 53, 1023, 1024, 40000])
def test_which_source_ports_are_answered(port, drop_low):
    query = dns.message.make_query(WEB, "A").to_wire()

    def answer_one():  # on the server's loop, where listeners live
        listener = _UdpListener(_udp_socket("127.0.0.1", 0, socket.AF_INET), srv.dns.responder,
                                _Observer(None, ".", BurstLog(logging.getLogger())), "1", 1024 if drop_low else 1)
        fake = listener.sock = _Datagrams(listener.sock, [(query, ("127.0.0.1", port))])
        listener._readable()
        listener.close()
        return fake.sent

    with RunningServer() as srv:
        sent = srv.call(answer_one)
    answered = port != 0 and (not drop_low or port >= 1024 or port == 53)
    assert sent == ([("127.0.0.1", port)] if answered else [])


def test_a_flood_is_read_in_batches_so_the_loop_gets_turns():
    """One wake-up answers at most UDP_BATCH datagrams; the rest wait for the next turn (TCP and timers run between)."""
    query = dns.message.make_query(WEB, "A").to_wire()

    def one_wakeup():
        listener = _UdpListener(_udp_socket("127.0.0.1", 0, socket.AF_INET), srv.dns.responder,
                                _Observer(None, ".", BurstLog(logging.getLogger())), "1", 1)
        fake = listener.sock = _Datagrams(listener.sock, [(query, ("127.0.0.1", 40000))] * (UDP_BATCH + 10))
        listener._readable()
        listener.close()
        return len(fake.sent), len(fake.datagrams)

    with RunningServer() as srv:
        assert srv.call(one_wakeup) == (UDP_BATCH, 10)


def test_a_reply_the_kernel_will_not_take_is_dropped_and_the_next_query_answered():
    query = dns.message.make_query(WEB, "A").to_wire()

    class _FullOnce(_Datagrams):
        def sendto(self, data, addr):
            if not self.sent:
                self.sent.append(None)
                raise BlockingIOError(11, "Resource temporarily unavailable")  # the send buffer is full
            super().sendto(data, addr)

    def two_queries():
        listener = _UdpListener(_udp_socket("127.0.0.1", 0, socket.AF_INET), srv.dns.responder,
                                _Observer(None, ".", BurstLog(logging.getLogger())), "1", 1)
        fake = listener.sock = _FullOnce(listener.sock, [(query, ("127.0.0.1", 40000)), (query, ("127.0.0.1", 40001))])
        listener._readable()
        listener.close()
        return fake.sent

    with RunningServer() as srv:
        assert srv.call(two_queries) == [None, ("127.0.0.1", 40001)]


def _raw_udp_from_port_0(payload: bytes, port: int) -> None:
    """One UDP datagram to 127.0.0.1:port whose source port is 0 (needs CAP_NET_RAW)."""
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP) as raw:
        header = struct.pack("!HHHH", 0, port, 8 + len(payload), 0)  # checksum 0: none (allowed over IPv4)
        raw.sendto(header + payload, ("127.0.0.1", 0))


def test_a_query_from_source_port_0_is_dropped_unanswered():
    with RunningServer() as srv:
        _web(srv)
        query = dns.message.make_query(WEB, "A").to_wire()
        try:
            _raw_udp_from_port_0(query, srv.port)
        except PermissionError:
            pytest.skip("sending from port 0 needs a raw socket (CAP_NET_RAW)")
        # A normal query sent after it is answered; the port-0 one never reached the responder.
        assert answers(srv.query(WEB)) == ["10.96.0.100"]
        assert srv.dns.responder.hits + srv.dns.responder.misses == 1


def _bind_low_port() -> socket.socket | None:
    for port in (19, 7, *range(900, 1000)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("127.0.0.1", port))
            return sock
        except OSError:
            sock.close()
    return None


@pytest.mark.parametrize("drop_low", [False, True])
def test_drop_low_source_ports_over_real_sockets(drop_low):
    sock = _bind_low_port()
    if sock is None:
        pytest.skip("cannot bind a port below 1024 here (needs root or CAP_NET_BIND_SERVICE)")
    with sock, RunningServer(drop_low_source_ports=drop_low) as srv:
        _web(srv)
        sock.settimeout(0.3 if drop_low else 3)  # a drop can only be seen as silence
        sock.sendto(dns.message.make_query(WEB, "A").to_wire(), (srv.host, srv.port))
        try:
            reply = sock.recv(512)
        except TimeoutError:
            reply = None
        assert (reply is None) == drop_low
        assert answers(srv.query(WEB)) == ["10.96.0.100"]  # ordinary clients are answered


# --- an exception while answering -----------------------------------------------------


def _panics(metrics: Metrics) -> float:
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name == "coredns_panics_total":
                return sample.value
    raise AssertionError("no coredns_panics_total")


def test_an_exception_per_packet_is_counted_and_logged_once_per_burst(caplog, monkeypatch):
    metrics = Metrics("dns://127.0.0.1:0", process_metrics=False)
    errors = BurstLog(logging.getLogger("clusterdns.server"), interval=1.0)
    with RunningServer(metrics=metrics, errors=errors) as srv:
        def broken(data, udp):
            raise ValueError("a bug on one query shape")

        monkeypatch.setattr(srv.dns.responder, "respond", broken)
        query = dns.message.make_query(WEB, "A").to_wire()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for _ in range(40):
                udp.sendto(query, (srv.host, srv.port))
        for _ in range(3):
            with socket.create_connection((srv.host, srv.port), timeout=3) as sock:
                sock.sendall(struct.pack("!H", len(query)) + query)
                reply = dns.message.from_wire(sock.recv(int.from_bytes(sock.recv(2), "big")))
                assert reply.rcode() == dns.rcode.SERVFAIL  # as CoreDNS answers a recovered panic
        wait_for(lambda: _panics(metrics) == 43, what="43 panics counted")

        def server_errors():
            return [r for r in caplog.records if r.name == "clusterdns.server" and r.levelno >= logging.ERROR]

        wait_for(lambda: any("more like this" in r.getMessage() for r in server_errors()), what="the burst summary")
        first = [r for r in server_errors() if "more like this" not in r.getMessage()]
        assert len(first) == 2 and all(r.exc_info for r in first)  # one UDP, one TCP, each with its traceback
        assert {r.getMessage().split(" query")[0] for r in first} == {
            "internal error answering a UDP", "internal error answering a TCP"
        }
        summaries = [r.getMessage() for r in server_errors() if "more like this" in r.getMessage()]
        assert any(s.startswith("39 more like this") for s in summaries), summaries
    assert len(server_errors()) <= 4


# --- TCP (RFC 7766) --------------------------------------------------------------------


def _connections(srv: RunningServer) -> int:
    return srv.call(lambda: len(srv.server._connections))


def _pipelined(name: str, count: int) -> bytes:
    wire = dns.message.make_query(name, "A").to_wire()
    return (struct.pack("!H", len(wire)) + wire) * count


def _big(srv: RunningServer, endpoints: int = 80) -> str:
    ips = [f"10.2.{i // 250}.{i % 250 + 1}" for i in range(endpoints)]
    srv.call(srv.dns.sink, [Upsert(service("big", cluster_ip="None")), Upsert(endpoint_slice("big-1", "big", ips))])
    return "big.default.svc.cluster.local"


def _tcp_query_succeeds(srv: RunningServer) -> bool:
    reply = dns.query.tcp(dns.message.make_query(WEB, "A"), srv.host, port=srv.port, timeout=2)
    return reply.rcode() == dns.rcode.NOERROR and answers(reply) == ["10.96.0.100"]


def test_slow_and_half_open_clients_cannot_lock_out_a_fresh_one():
    limits = TcpLimits(max_connections=20)
    with RunningServer(tcp_limits=limits) as srv:
        _web(srv)
        held = []
        try:
            for i in range(40):  # twice the limit: half say nothing, half are slow-loris, one byte so far
                sock = socket.create_connection((srv.host, srv.port), timeout=3)
                if i % 2:
                    sock.sendall(b"\x00")
                held.append(sock)
            wait_for(lambda: _connections(srv) == 20, what="20 connections held")
            for _ in range(5):  # each fresh client is answered (an old idle one makes room)
                assert _tcp_query_succeeds(srv)
            assert _connections(srv) <= 20
            # the first connections held were the ones closed
            held[0].settimeout(3)
            assert held[0].recv(1) == b""
        finally:
            for sock in held:
                sock.close()


def _replies_queued(srv: RunningServer) -> bool:
    """The server holds replies a client has not taken (it waits for the client to read)."""
    return srv.call(lambda: any(c.writer.transport.get_write_buffer_size() for c in srv.server._connections.values()))


def _never_reading_client(srv: RunningServer, name: str) -> socket.socket:
    """A client that pipelines queries for a big answer and never reads a reply."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((srv.host, srv.port))
    sock.settimeout(0.5)
    try:
        sock.sendall(_pipelined(name, 3000))  # about 150 KB of queries for about 4 MB of replies
    except (TimeoutError, OSError):
        pass  # the server stopped reading us: what it should do
    return sock


def test_a_client_that_never_reads_its_replies_is_cut_off(caplog):
    limits = TcpLimits(write_timeout=0.3, max_queued_bytes=8192)
    with RunningServer(tcp_limits=limits) as srv:
        _web(srv)
        name = _big(srv)
        with _never_reading_client(srv, name):
            wait_for(lambda: _replies_queued(srv), what="replies queued for the client")
            wait_for(lambda: _connections(srv) == 0, what="the server to drop the client that does not read")
            assert _tcp_query_succeeds(srv)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def _uvloop_factory():
    uvloop = pytest.importorskip("uvloop")
    return uvloop.new_event_loop


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_clients_resetting_mid_reply_leave_no_traceback(loop, caplog):
    factory = _uvloop_factory() if loop == "uvloop" else None
    options = {"loop_factory": factory} if factory else {}
    with RunningServer(**options) as srv:
        name = _big(srv)
        for _ in range(10):
            sock = _never_reading_client(srv, name)

            wait_for(lambda: _replies_queued(srv), what="replies queued for the client")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST, with replies still queued
            wait_for(lambda: _connections(srv) == 0, what="the connection to be gone")
        _web(srv)
        assert _tcp_query_succeeds(srv)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_forwarded_udp_answers_are_capped_at_max_udp_size_too():
    from .test_cli import Serve
    from .upstreams import FakeUpstream

    with FakeUpstream() as upstream:
        serve = Serve("--manifests", str(ZONES), "--upstream", upstream.address, "--max-udp-size", "512", http="")
        try:
            q = dns.message.make_query("many.example.com", "TXT", use_edns=0, payload=4096)
            for _ in range(2):  # from the upstream, then from the forward cache
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.settimeout(3)
                    sock.sendto(q.to_wire(), ("127.0.0.1", serve.port))
                    raw = sock.recv(65535)
                assert len(raw) <= 512 and dns.message.from_wire(raw).flags & dns.flags.TC
            full = dns.query.tcp(q, "127.0.0.1", port=serve.port, timeout=3)
            assert len(full.answer[0]) == 7  # all of it over TCP
        finally:
            assert serve.stop() == 0


def test_a_name_too_long_to_pack_is_formerr_and_never_forwarded():
    from .test_cli import Serve
    from .upstreams import FakeUpstream

    labels = [b"x" * 20] * 13 + [b"example", b"com"]  # 288 bytes in short labels: outside the cluster
    name = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    query = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", 1, 1)
    with FakeUpstream() as upstream:
        serve = Serve("--manifests", str(ZONES), "--upstream", upstream.address, http="")
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(3)
                sock.sendto(query, ("127.0.0.1", serve.port))
                reply = sock.recv(512)
            assert reply[:2] == b"\x42\x42" and reply[3] & 0x0F == dns.rcode.FORMERR
            asked = [n for n, _, _ in upstream.asked if "example.com" in n and "x" * 20 in n]
            assert asked == []
        finally:
            assert serve.stop() == 0
    assert "Traceback" not in serve.text
