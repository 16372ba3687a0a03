"""Negatives encoded from the query's bytes say exactly what answer() says; the caches stay bounded."""

import dns.message
import dns.rcode
from dnslib import DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterdns.answer import answer
from clusterdns.app import ClusterDNS
from clusterdns.events import Upsert
from clusterdns.settings import Settings
from clusterdns.wire import parse_question, plain_name

from .builders import endpoint_slice, namespace, service


def cluster(**options) -> ClusterDNS:
    dns = ClusterDNS(Settings(**options))
    dns.sink([Upsert(o) for o in (
        namespace("default"), namespace("shop"),
        service("web", ports=(("http", 80, 8080),)),
        service("hs", cluster_ip="None"),
        endpoint_slice("hs-1", "hs", ["10.1.0.1", "10.1.0.2"], hostnames={"10.1.0.1": "web-0"}),
        service("cart", ns="shop"),
    )])
    return dns


DNS = cluster()
NO_EXPLAIN = cluster(explain=False)

NAMES = [
    "nope.default.svc.cluster.local.",  # NXDOMAIN
    "x.nope.default.svc.cluster.local.",
    "default.svc.cluster.local.",  # empty non-terminal: NODATA
    "svc.cluster.local.",
    "_tcp.web.default.svc.cluster.local.",
    "web.default.svc.cluster.local.",  # has A: NODATA for other types
    "web-0.hs.default.svc.cluster.local.",
    "web.nosuch.svc.cluster.local.",
    "web.default.svc.cluster.local.default.svc.cluster.local.",
    "api.github.com.shop.svc.cluster.local.",
    "_http._udp.web.default.svc.cluster.local.",
    "9.9.9.10.in-addr.arpa.",  # reverse misses
    "100.0.96.10.in-addr.arpa.",
    "1.ip6.arpa.",
    "web.default.pod.cluster.local.",  # pod names: not a plain miss, left to answer()
]
QTYPES = ["A", "AAAA", "TXT", "MX", "SRV", "PTR", "NS", "CNAME"]


def mixed_case(name: str, flips: int) -> str:
    return "".join(c.upper() if c.isalpha() and (flips >> (i % 16)) & 1 else c for i, c in enumerate(name))


def slow(dns: ClusterDNS, wire: bytes) -> bytes:
    reply, _ = answer(dns.zone, DNSRecord.parse(wire))
    return bytes(reply.pack())


def dns_message(wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(wire)


def query(name: str, qtype: str, rd: bool, cd: bool, edns: int | None) -> bytes:
    q = dns.message.make_query(name, qtype, use_edns=edns is not None, want_dnssec=edns == 1)
    if not rd:
        q.flags &= ~dns.flags.RD
    if cd:
        q.flags |= dns.flags.CD
    return q.to_wire()


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(NAMES), qtype=st.sampled_from(QTYPES), flips=st.integers(0, 0xFFFF),
    rd=st.booleans(), cd=st.booleans(), edns=st.sampled_from([None, 0, 1]), explain=st.booleans(),
)
def test_fast_negative_is_the_answer_dnslib_would_give(name, qtype, flips, rd, cd, edns, explain):
    dns_ = DNS if explain else NO_EXPLAIN
    wire = query(mixed_case(name, flips), qtype, rd, cd, edns)
    fast = dns_.responder._negative(wire, parse_question(wire), udp=True)
    expected_wire = slow(dns_, wire)
    expected = dns_message(expected_wire)
    if fast is None:
        assert expected.answer or name.endswith(".pod.cluster.local.")  # only positives and pod names go slow
        return
    response, rcode, _ = fast
    assert len(response) <= len(expected_wire)  # compressed at least as well (dnslib misses mixed-case apexes)
    got = dns_message(response)
    assert got == expected  # ID, flags, question (letter case), answer, authority (SOA), additional
    assert got.rcode() == expected.rcode() == rcode
    assert got.question[0].name.to_text() == mixed_case(name, flips)
    assert (got.edns, got.ednsflags, got.payload, got.options) == (expected.edns, expected.ednsflags,
                                                                    expected.payload, expected.options)


def test_the_usual_misses_take_the_fast_path():
    for name, rcode in (("nope.default.svc.cluster.local.", dns.rcode.NXDOMAIN),
                        ("default.svc.cluster.local.", dns.rcode.NOERROR),
                        ("9.9.9.10.in-addr.arpa.", dns.rcode.NXDOMAIN)):
        for edns in (None, 0):
            wire = query(name, "A", True, False, edns)
            fast = DNS.responder._negative(wire, parse_question(wire), udp=True)
            assert fast is not None and fast[1] == rcode
            assert dns_message(fast[0]).authority[0].name.to_text() in ("cluster.local.", "in-addr.arpa.")


def test_a_miss_before_the_first_sync_is_not_denied():
    dns_ = ClusterDNS(Settings(), required_kinds=["Service"])
    wire = query("nope.default.svc.cluster.local.", "A", True, False, None)
    response, _, rcode, _ = dns_.responder.respond(wire, udp=True)
    assert rcode == dns.rcode.SERVFAIL == dns_message(response).rcode()


def test_a_flood_of_unique_names_leaves_the_caches_and_their_index_bounded():
    dns_ = cluster()
    dns_.responder.cache.exact.size = dns_.responder.cache.by_question.size = 50
    for i in range(2000):
        for name in (f"u{i}.default.svc.cluster.local.", f"u{i}.github.com.shop.svc.cluster.local."):
            dns_.responder.respond(query(name, "A", True, False, 0), udp=True)
    cache = dns_.responder.cache
    assert len(cache.exact) <= 50 and len(cache.by_question) <= 50
    assert cache.index_size() <= 100 + 10  # names of the entries kept (and their reasons' facts), nothing more
    # and what is kept still follows the zone
    name = "u1999.default.svc.cluster.local."
    wire = query(name, "A", True, False, None)
    for hit in (False, False, True):  # kept when asked the second time, replayed the third
        response, _, _, was_hit = dns_.responder.respond(wire, udp=True)
        assert dns_message(response).rcode() == dns.rcode.NXDOMAIN and was_hit is hit
    dns_.sink([Upsert(service("u1999", cluster_ip="10.96.0.199"))])
    reply = dns_message(dns_.responder.respond(wire, udp=True)[0])
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer[0][0].to_text() == "10.96.0.199"


def test_names_asked_once_evict_no_answer_asked_again():
    """A flood of unique names is answered without taking cache entries: the answers asked again stay hits."""
    dns_ = cluster()
    cache = dns_.responder.cache
    cache.exact.size = cache.by_question.size = 50
    repeated = [query(name, "A", True, False, None) for name in ("web.default.svc.cluster.local.",
                                                                 "nope.default.svc.cluster.local.")]
    for wire in repeated * 2:
        dns_.responder.respond(wire, udp=True)
    for i in range(1000):  # 20 times the cache's size
        dns_.responder.respond(query(f"flood{i}.default.svc.cluster.local.", "A", True, False, None), udp=True)
    assert len(cache.exact) < 50  # (a name sharing a filter bit with an earlier one may be kept: rarely)
    assert all(dns_.responder.respond(wire, udp=True)[3] for wire in repeated)


def test_respond_says_whether_it_was_a_hit():
    dns_ = cluster()
    wire = query("web.default.svc.cluster.local.", "A", True, False, None)
    assert dns_.responder.respond(wire, udp=True)[3] is False
    assert dns_.responder.respond(wire, udp=True)[3] is True
    other_case = query("WEB.default.svc.cluster.local.", "A", True, False, None)
    assert dns_.responder.respond(other_case, udp=True)[3] is True  # the normalised tier


def test_answer_returns_the_names_it_read():
    q = DNSRecord.question("_http._tcp.hs.default.svc.cluster.local", "SRV")
    reply, names = answer(DNS.zone, q)
    assert reply.rr and "_http._tcp.hs.default.svc.cluster.local." in names
    assert "web-0.hs.default.svc.cluster.local." in names  # the SRV target, read for its glue
    _, names = answer(DNS.zone, DNSRecord.question("nope.default.svc.cluster.local", "A"))
    assert "nope.default.svc.cluster.local." in names


def test_a_name_two_owners_share_merges_and_splits_again():
    from clusterdns.zone import Zone

    zone = Zone(Settings())
    ptr = "1.0.1.10.in-addr.arpa."
    zone.replace("a", {ptr: {12: ("a.default.svc.cluster.local.",)}, "a.x.cluster.local.": {1: ("10.1.0.1",)}})
    zone.replace("b", {ptr: {12: ("b.default.svc.cluster.local.",)}})
    assert zone.records(ptr) == {12: ("a.default.svc.cluster.local.", "b.default.svc.cluster.local.")}
    zone.replace("a", {"a.x.cluster.local.": {1: ("10.1.0.1",)}})
    assert zone.records(ptr) == {12: ("b.default.svc.cluster.local.",)}
    zone.replace("a", {ptr: {12: ("a2.default.svc.cluster.local.",)}})
    assert zone.records(ptr) == {12: ("a2.default.svc.cluster.local.", "b.default.svc.cluster.local.")}
    assert zone.records("a.x.cluster.local.") is None and not zone.exists("x.cluster.local.")
    zone.replace("b", {})
    zone.replace("a", {})
    assert zone.records(ptr) is None and not zone.exists("0.1.10.in-addr.arpa.") and zone.record_count == 0


_PLAIN = b"abcdefghijklmnopqrstuvwxyz0123456789-_"
_LABEL = st.one_of(
    st.binary(min_size=1, max_size=63),  # anything, dots, zero bytes and bytes that look like lengths included
    st.text(alphabet=_PLAIN.decode(), min_size=1, max_size=63).map(str.encode),
    st.integers(40, 63).map(lambda n: b"9" * n),  # lengths whose byte is a digit or "-" (45, 48-57)
)


@settings(max_examples=500, deadline=None)
@given(labels=st.lists(_LABEL, min_size=0, max_size=5))
def test_the_plain_name_of_any_wire_name_is_the_labels_joined_or_none(labels):
    """The one-pass translation agrees with joining the labels, for every mix of label bytes and lengths."""
    def joined(labels):
        plain = labels and all(all(byte in _PLAIN for byte in label) for label in labels)
        return (b".".join(labels) + b".").decode() if plain else None

    wire = b"".join(bytes((len(label),)) + label for label in labels) + b"\0"
    assert plain_name(wire) == joined(labels)
    if len(wire) <= 255:  # the same through a whole query's parse, which lower-cases the name
        question = parse_question(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + wire + b"\x00\x01\x00\x01")
        assert question is not None and question.plain_name() == joined([label.lower() for label in labels])


def test_the_apex_of_a_zone_inside_another_is_answered_by_its_own_soa():
    """A cluster zone under a reverse zone: its apex is an answer (SOA), never a negative of the outer zone."""
    nested = ClusterDNS(Settings(zone="k8s.in-addr.arpa."))
    nested.sink([])
    for qtype, answered in (("SOA", True), ("A", False)):
        reply = dns_message(nested.responder.respond(query("k8s.in-addr.arpa.", qtype, True, False, None), udp=True)[0])
        assert reply.rcode() == dns.rcode.NOERROR and bool(reply.answer) is answered
        soa = (reply.answer if answered else reply.authority)[0]
        assert soa.name.to_text() == "k8s.in-addr.arpa."
