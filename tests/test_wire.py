"""On the wire: UDP and TCP, EDNS and truncation, letter case, malformed input."""

import socket
import struct
import threading
import time

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .builders import endpoint_slice, service
from .dnsserver import RunningServer, answers

from clusterdns.events import Upsert
from clusterdns.server import UDP_BUFFER, TcpLimits
from clusterdns.settings import Settings

MANY = 80  # endpoints: their A records cannot fit in 512 bytes


def _big_service():
    ips = [f"10.2.{i // 250}.{i % 250 + 1}" for i in range(MANY)]
    return [Upsert(service("big", cluster_ip="None")), Upsert(endpoint_slice("big-1", "big", ips))]


@pytest.fixture(scope="module")
def server():
    with RunningServer() as srv:
        srv.call(srv.dns.sink, [Upsert(service("web", ports=(("http", 80, 8080),))), *_big_service()])
        yield srv


@pytest.mark.parametrize("tcp", [False, True])
def test_answer_over_udp_and_tcp(server, tcp):
    reply = server.query("web.default.svc.cluster.local", "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA and not reply.flags & dns.flags.RA
    assert answers(reply) == ["10.96.0.100"]


@pytest.mark.parametrize("tcp", [False, True])
def test_any_gets_one_rrset(server, tcp):
    """RFC 8482: ANY is answered minimally, over UDP and TCP alike: one RRset, never everything at the name."""
    web = server.query("web.default.svc.cluster.local", "ANY", tcp=tcp)  # it has A and SRV records
    assert [(r.rdtype, len(r)) for r in web.answer] == [(dns.rdatatype.A, 1)]
    srv = server.query("_http._tcp.web.default.svc.cluster.local", "ANY", tcp=tcp)
    assert [r.rdtype for r in srv.answer] == [dns.rdatatype.SRV] and srv.additional  # with its glue
    q = dns.message.make_query("big.default.svc.cluster.local", "ANY", use_edns=0, payload=65535)
    if tcp:  # 80 A records and 80 SRV records (and their glue) once; now the A RRset alone
        big = server.send(q, tcp=True)
        assert [(r.rdtype, len(r)) for r in big.answer] == [(dns.rdatatype.A, MANY)] and not big.additional
    else:
        assert len(server.send_raw(q.to_wire())) <= 1232


def test_letter_case_echoed_including_from_cache(server):
    for name in ("web.default.svc.cluster.local.", "WeB.DEFAULT.svc.Cluster.Local.", "WEB.default.SVC.cluster.local."):
        reply = server.query(name)
        assert reply.question[0].name.to_text() == name
        assert reply.answer[0].name.to_text() == name
        assert answers(reply) == ["10.96.0.100"]


def test_id_matches_on_cache_hits(server):
    for _ in range(3):
        q = dns.message.make_query("web.default.svc.cluster.local", "A")
        reply = server.send(q)  # dnspython checks the ID and question match
        assert reply.id == q.id


def test_edns_echoed_and_payload_honoured(server):
    # 80 A records take about 1,300 bytes: more than our 1232, less than the 1400 the client offers
    q = dns.message.make_query("big.default.svc.cluster.local", "A", use_edns=0, payload=1400)
    capped = dns.query.udp(q, server.host, port=server.port, timeout=3, raise_on_truncation=False)
    assert capped.edns == 0 and capped.payload == 1232 and capped.flags & dns.flags.TC
    with RunningServer(settings=Settings(max_udp_size=1400)) as roomy:
        roomy.call(roomy.dns.sink, _big_service())
        reply = roomy.send(q)
        assert reply.payload == 1400 and not reply.flags & dns.flags.TC
        assert len(answers(reply)) == MANY
    do = server.query("web.default.svc.cluster.local", "A", use_edns=0, want_dnssec=True)
    assert do.ednsflags & dns.flags.DO


@pytest.mark.parametrize("payload", [1233, 4096, 65535])
def test_udp_replies_are_capped_at_our_payload_size(server, payload):
    """Amplification: whatever size the client offers, a UDP reply is at most --max-udp-size (1232)."""
    q = dns.message.make_query("big.default.svc.cluster.local", "A", use_edns=0, payload=payload)
    for _ in range(2):  # the first answer is built, the second comes from the caches
        raw = server.send_raw(q.to_wire())
        assert len(raw) <= 1232
        assert dns.message.from_wire(raw).flags & dns.flags.TC
    assert len(answers(server.send(q, tcp=True))) == MANY  # TCP has everything


@pytest.mark.parametrize("use_edns, payload", [(False, 512), (0, 512), (0, 1232)])
def test_truncation_is_well_formed_and_tcp_has_everything(server, use_edns, payload):
    q = dns.message.make_query("big.default.svc.cluster.local", "A", use_edns=use_edns, payload=payload)
    wire = dns.query.udp(q, server.host, port=server.port, timeout=3, raise_on_truncation=False)
    assert wire.flags & dns.flags.TC
    assert wire.question == q.question
    assert (wire.edns == 0) == (use_edns is not False)
    raw = server.send_raw(q.to_wire())
    assert len(raw) <= payload
    full = server.send(q, tcp=True)
    assert not full.flags & dns.flags.TC and len(answers(full)) == MANY


def test_several_queries_on_one_tcp_connection(server):
    with socket.create_connection((server.host, server.port), timeout=3) as sock:
        for name in ("web.default.svc.cluster.local", "nope.default.svc.cluster.local", "web.default.svc.cluster.local"):
            q = dns.message.make_query(name, "A")
            dns.query.send_tcp(sock, q)
            reply, _ = dns.query.receive_tcp(sock, expiration=time.time() + 3)
            assert reply.id == q.id
        # pipelined: two queries written back to back, two answers come back
        q1, q2 = dns.message.make_query("web.default.svc.cluster.local", "A"), dns.message.make_query("web.default.svc.cluster.local", "SRV")
        sock.sendall(b"".join(struct.pack("!H", len(w)) + w for w in (q1.to_wire(), q2.to_wire())))
        ids = {dns.query.receive_tcp(sock, expiration=time.time() + 3)[0].id for _ in range(2)}
        assert ids == {q1.id, q2.id}


def test_tcp_idle_timeout_closes_connection():
    with RunningServer(tcp_limits=TcpLimits(idle_timeout=0.2)) as server:
        with socket.create_connection((server.host, server.port), timeout=3) as sock:
            assert sock.recv(1) == b""  # server closed it: an idle client cannot pin a connection


def test_notimp_for_other_opcodes(server):
    wire = bytearray(dns.message.make_query("web.default.svc.cluster.local", "A").to_wire())
    for opcode in (2, 4, 5):  # STATUS, NOTIFY, UPDATE
        wire[2] = (wire[2] & 0x87) | (opcode << 3)
        reply = server.send_raw(bytes(wire))
        assert reply[:2] == wire[:2] and reply[3] & 0x0F == dns.rcode.NOTIMP
        assert (reply[2] >> 3) & 0x0F == opcode


def test_formerr_for_two_questions_and_garbage_after_header(server):
    q = dns.message.make_query("web.default.svc.cluster.local", "A")
    wire = bytearray(q.to_wire())
    question = wire[12:]
    two = wire[:4] + b"\x00\x02" + wire[6:] + question
    reply = server.send_raw(bytes(two))
    assert reply[:2] == wire[:2] and reply[3] & 0x0F == dns.rcode.FORMERR
    garbage = wire[:12] + b"\xff\xfe\x01"
    reply = server.send_raw(bytes(garbage))
    assert reply[:2] == wire[:2] and reply[3] & 0x0F == dns.rcode.FORMERR


def _query_bytes(labels, qtype=1, trailer=b"", arcount=0, ancount=0, nscount=0):
    name = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    header = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, ancount, nscount, arcount)
    return header + name + struct.pack("!HH", qtype, 1) + trailer


LONG_NAMES = {
    "label of 64 bytes": [b"a" * 64, b"default", b"svc", b"cluster", b"local"],
    "name of 256 bytes": [b"a" * 63] * 3 + [b"b" * 44, b"svc", b"cluster", b"local"],
    "name of 300 bytes, short labels": [b"x" * 20] * 13 + [b"cluster", b"local"],
}


@pytest.mark.parametrize("labels", LONG_NAMES.values(), ids=LONG_NAMES.keys())
def test_names_too_long_to_pack_get_formerr_without_a_traceback(server, labels, caplog):
    wire = _query_bytes(labels)
    assert sum(len(label) + 1 for label in labels) + 1 > 255 or max(map(len, labels)) > 63
    for _ in range(3):
        reply = server.send_raw(wire)
        assert reply is not None and reply[:2] == wire[:2] and reply[3] & 0x0F == dns.rcode.FORMERR
    with socket.create_connection((server.host, server.port), timeout=3) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        reply, _ = dns.query.receive_tcp(sock, expiration=time.time() + 3)
        assert reply.rcode() == dns.rcode.FORMERR and reply.id == 0x4242
    assert not [r for r in caplog.records if r.levelno >= 40], "no error logged for a malformed query"


def test_a_name_of_255_bytes_is_answered(server):
    labels = [b"a" * 63] * 3 + [b"b" * 43, b"svc", b"cluster", b"local"]
    assert sum(len(label) + 1 for label in labels) + 1 == 255
    reply = server.send_raw(_query_bytes(labels))
    assert reply[3] & 0x0F == dns.rcode.NXDOMAIN


OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # root owner, type OPT, payload 1232


@pytest.mark.parametrize(
    "sections", [dict(ancount=1), dict(nscount=1), dict(ancount=1, arcount=1)], ids=["answer", "authority", "both"]
)
def test_opt_outside_the_additional_section_is_formerr(server, sections):
    web = [b"web", b"default", b"svc", b"cluster", b"local"]
    wire = _query_bytes(web, trailer=OPT * sum(sections.values()), **sections)
    reply = server.send_raw(wire)
    assert reply[:2] == wire[:2] and reply[3] & 0x0F == dns.rcode.FORMERR


@pytest.mark.parametrize("edns", [False, True])
@pytest.mark.parametrize("garbage", [b"\x00", b"junk after the question", OPT])
def test_trailing_garbage_after_the_question_is_formerr(server, edns, garbage):
    web = [b"web", b"default", b"svc", b"cluster", b"local"]
    clean = _query_bytes(web, trailer=OPT if edns else b"", arcount=int(edns))
    assert server.send_raw(clean)[3] & 0x0F == dns.rcode.NOERROR
    reply = server.send_raw(clean + garbage)
    assert reply[:2] == clean[:2] and reply[3] & 0x0F == dns.rcode.FORMERR


def test_too_short_and_responses_are_dropped(server):
    assert server.send_raw_or_drop(b"\x12\x34\x01") is None
    response = dns.message.make_response(dns.message.make_query("web.default.svc.cluster.local", "A"))
    assert server.send_raw_or_drop(response.to_wire()) is None
    assert answers(server.query("web.default.svc.cluster.local")) == ["10.96.0.100"]  # still serving


BURST = 400  # queries in flight at once: more than Linux's default receive buffer holds (~256 small datagrams)


def test_udp_listener_asks_for_big_socket_buffers(server):
    """The kernel's default receive buffer is what dropped a burst; the listener's is the grant for UDP_BUFFER."""
    listener = server.server.udp[0].sock
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as asked:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            asked.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER)
            granted = asked.getsockopt(socket.SOL_SOCKET, option)
            assert listener.getsockopt(socket.SOL_SOCKET, option) == granted > plain.getsockopt(socket.SOL_SOCKET, option)


def test_a_burst_queued_while_the_server_is_busy_is_answered_whole(server):
    """BURST queries arrive while the server's loop is stuck: every one waits in the socket buffer and is answered."""
    stalled, release = threading.Event(), threading.Event()

    def stall():
        stalled.set()
        release.wait(10)

    server._loop.call_soon_threadsafe(stall)
    assert stalled.wait(10)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER)
        client.settimeout(5)
        try:
            for n in range(BURST):
                query = dns.message.make_query("web.default.svc.cluster.local", "A")
                query.id = n
                client.sendto(query.to_wire(), (server.host, server.port))
        finally:
            release.set()
        ids = set()
        try:
            while len(ids) < BURST:
                ids.add(int.from_bytes(client.recv(65535)[:2], "big"))
        except TimeoutError:
            pass  # a lost query: the assertion says how many
    assert len(ids) == BURST


def _mutations():
    seed = dns.message.make_query("web.default.svc.cluster.local", "SRV", use_edns=0).to_wire()
    flips = st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), max_size=6)
    mutated = flips.map(lambda fl: _apply(seed, fl))
    truncated = st.integers(0, len(seed)).map(lambda n: seed[:n])
    return st.one_of(st.binary(max_size=600), mutated, truncated)


def _apply(seed, flips):
    out = bytearray(seed)
    for pos, value in flips:
        out[pos] = value
    return bytes(out)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(packet=_mutations())
def test_random_and_mutated_packets_never_crash_or_hang(server, packet):
    expect_drop = len(packet) < 12 or bool(packet[2] & 0x80)
    reply = server.send_raw_or_drop(packet)
    if reply is not None:
        assert reply[:2] == packet[:2]  # any reply is for this query
        assert reply[2] & 0x80  # and is a response
        if (packet[2] >> 3) & 0x0F == 0:
            dns.message.from_wire(reply, question_only=True)  # and parses
        else:
            assert reply[3] & 0x0F in (dns.rcode.NOTIMP, dns.rcode.FORMERR)
    else:
        assert expect_drop  # only headerless junk or responses are dropped


def test_still_serving_after_fuzzing(server):
    assert answers(server.query("web.default.svc.cluster.local", tcp=True)) == ["10.96.0.100"]


def test_glue_is_dropped_before_setting_tc(server):
    # 7 SRV targets fit in 512 bytes; with their A records as glue they do not
    ips = [f"10.3.0.{i}" for i in range(1, 8)]
    server.call(server.dns.sink, [Upsert(service("seven", cluster_ip="None")), Upsert(endpoint_slice("seven-1", "seven", ips))])
    q = dns.message.make_query("_http._tcp.seven.default.svc.cluster.local", "SRV", use_edns=False)
    reply = dns.query.udp(q, server.host, port=server.port, timeout=3, raise_on_truncation=False)
    assert not reply.flags & dns.flags.TC
    assert len(answers(reply)) == 7 and reply.additional == []
    full = server.send(q, tcp=True)
    assert sum(len(r) for r in full.additional) == 7


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(packet=_mutations())
def test_mutated_packets_over_tcp_get_a_reply_or_a_close(server, packet):
    with socket.create_connection((server.host, server.port), timeout=3) as sock:
        sock.sendall(struct.pack("!H", len(packet)) + packet)
        head = sock.recv(2)
        if head:  # a reply: well framed, for this query
            length = struct.unpack("!H", head)[0]
            body = b""
            while len(body) < length:
                chunk = sock.recv(length - len(body))
                assert chunk
                body += chunk
            assert body[:2] == packet[:2] and body[2] & 0x80
        else:
            assert len(packet) < 12 or packet[2] & 0x80  # dropped: closed, never hung
