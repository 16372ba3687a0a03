"""The forwarder's pieces without sockets: wire helpers, cache entries, upstream order, settings parsing."""

from __future__ import annotations

import pytest
from dnslib import RCODE, RR, DNSRecord, EDNS0

from clusterdns.forward.cache import DENIAL, SUCCESS, ForwardCache, entry_for
from clusterdns.forward.forwarder import Forwarder
from clusterdns.forward.message import client_query, for_client, layout
from clusterdns.forward.settings import ForwardSettings, parse_address, parse_stub


def response(name="example.com", rcode=RCODE.NOERROR, answers=(), auth=(), opt=True) -> bytes:
    reply = DNSRecord.question(name, "A").reply()
    reply.header.rcode = rcode
    for line in answers:
        reply.add_answer(*RR.fromZone(line))
    for line in auth:
        reply.add_auth(*RR.fromZone(line))
    if opt:
        reply.add_ar(EDNS0(udp_len=4096))
    return bytes(reply.pack())


SOA = "example.com. 3600 IN SOA ns.example.com. hostmaster.example.com. 1 7200 1800 86400 30"


def test_layout_finds_every_ttl_and_drops_the_opt_record():
    shape = layout(response(answers=["example.com. 300 IN A 192.0.2.1", "example.com. 60 IN A 192.0.2.2"]))
    assert [ttl for _, ttl in shape.ttls] == [300, 60]
    parsed = DNSRecord.parse(shape.without_opt)
    assert parsed.ar == [] and len(parsed.rr) == 2


def test_layout_rejects_a_truncated_message():
    data = response(answers=["example.com. 300 IN A 192.0.2.1"])
    with pytest.raises(ValueError):
        layout(data[:-15])


@pytest.mark.parametrize(
    "rcode, answers, auth, kind, lifetime",
    [
        (RCODE.NOERROR, ["example.com. 300 IN A 192.0.2.1", "example.com. 60 IN A 192.0.2.2"], [], SUCCESS, 60),
        (RCODE.NOERROR, ["example.com. 86400 IN A 192.0.2.1"], [], SUCCESS, 3600),  # capped
        (RCODE.NXDOMAIN, [], [SOA], DENIAL, 30),  # min(SOA TTL, MINIMUM)
        (RCODE.NOERROR, [], [SOA], DENIAL, 30),  # NODATA
        (RCODE.NXDOMAIN, [], [], None, 0),  # no SOA: not cached (RFC 2308)
        (RCODE.SERVFAIL, [], [], None, 0),
        (RCODE.NOERROR, ["example.com. 0 IN A 192.0.2.1"], [], None, 0),
    ],
)
def test_what_is_cached_and_for_how_long(rcode, answers, auth, kind, lifetime):
    entry, got = entry_for(layout(response(rcode=rcode, answers=answers, auth=auth)), 100.0, 3600, 1800)
    assert got == kind
    assert entry.expires - entry.stored == lifetime


def test_ttls_count_down_and_stale_entries_serve_ttl_zero():
    data = response(answers=["example.com. 300 IN A 192.0.2.1"])
    entry, _ = entry_for(layout(data), 0.0, 3600, 1800)
    query = client_query(bytes(DNSRecord.question("EXAMPLE.com", "A").pack()), 1232)
    aged = DNSRecord.parse(for_client(entry.message, entry.ttls, 120, query, True, 1232))
    stale = DNSRecord.parse(for_client(entry.message, entry.ttls, None, query, True, 1232))
    assert aged.rr[0].ttl == 180 and stale.rr[0].ttl == 0
    assert str(aged.q.qname) == "EXAMPLE.com."
    assert aged.header.ra == 1 and aged.ar == []  # no OPT: the client sent none


def test_the_cache_keeps_successes_and_denials_apart_and_serves_stale_for_a_while():
    now = [0.0]
    cache = ForwardCache(size=2, serve_stale=10, clock=lambda: now[0])
    entry, kind = entry_for(layout(response(answers=["example.com. 5 IN A 192.0.2.1"])), 0.0, 3600, 1800)
    cache.put(b"k", entry, kind)
    assert cache.get(b"k") == (entry, True)
    now[0] = 7
    assert cache.get(b"k") == (entry, False)  # expired, kept for serve-stale
    now[0] = 16
    assert cache.get(b"k") == (None, False)
    assert cache.counts() == {SUCCESS: 0, DENIAL: 0}


def test_upstream_order_per_policy():
    addresses = tuple(("127.0.0.1", p) for p in (1001, 1002, 1003))

    def order(policy):
        forwarder = Forwarder(ForwardSettings(upstreams=addresses, policy=policy))
        return [[u.address[1] for u in forwarder._order(forwarder.default)] for _ in range(3)]

    assert order("sequential") == [[1001, 1002, 1003]] * 3
    assert order("round_robin") == [[1001, 1002, 1003], [1002, 1003, 1001], [1003, 1001, 1002]]
    assert all(sorted(o) == [1001, 1002, 1003] for o in order("random"))
    forwarder = Forwarder(ForwardSettings(upstreams=addresses, policy="sequential"))
    forwarder.upstreams[0].healthy = False
    assert [u.address[1] for u in forwarder._order(forwarder.default)] == [1002, 1003]  # the down one skipped


@pytest.mark.parametrize(
    "text, expected",
    [
        ("192.0.2.1", ("192.0.2.1", 53)),
        ("192.0.2.1:5353", ("192.0.2.1", 5353)),
        ("2001:db8::1", ("2001:db8::1", 53)),
        ("[2001:db8::1]:5353", ("2001:db8::1", 5353)),
        ("fe80::1%eth0", ("fe80::1%eth0", 53)),
    ],
)
def test_upstream_addresses(text, expected):
    assert parse_address(text) == expected


def test_stub_zones_are_absolute_and_lower_case():
    stub = parse_stub("Corp.Example=192.0.2.53,192.0.2.54:5353")
    assert stub.zone == "corp.example." and stub.upstreams == (("192.0.2.53", 53), ("192.0.2.54", 5353))


def test_an_opcode_other_than_query_is_not_a_client_query():
    notify = DNSRecord.question("example.com", "SOA")
    notify.header.opcode = 4
    assert client_query(bytes(notify.pack()), 1232) is None
