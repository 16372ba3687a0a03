"""--loadbalance: A/AAAA records rotate between responses, in the cached bytes, with the same set each time."""

from __future__ import annotations

import dns.message
import dns.rdatatype
import pytest
from dnslib import QTYPE, RR, A, AAAA, CNAME, DNSHeader, DNSQuestion, DNSRecord

from clusterdns.loadbalance import rotate, rotation_plan
from clusterdns.serving import Serving
from tests.dnsserver import ask

HEADLESS = "zk-hs.default.svc.cluster.local."
ZK_PODS = ["10.244.1.40", "10.244.1.42", "10.244.2.41"]  # zones/zookeeper.yaml


def response(*rrs: RR, ar: tuple[RR, ...] = (), rcode: int = 0, qname: str = "web.example.") -> bytes:
    record = DNSRecord(DNSHeader(id=7, qr=1, rcode=rcode), q=DNSQuestion(qname), rr=list(rrs), ar=list(ar))
    return bytes(record.pack())


def addresses(packet: bytes) -> list[list[str]]:
    """The answer section as dnspython reads it: per RRset, the addresses in wire order."""
    message = dns.message.from_wire(packet)
    return [[rd.to_text() for rd in rrset] for rrset in message.answer]


# --------------------------------------------------------------------------- on bytes


def test_a_run_turns_and_the_message_stays_valid():
    packet = response(*(RR("web.example.", QTYPE.A, ttl=5, rdata=A(f"10.0.0.{i}")) for i in range(1, 5)))
    plan = rotation_plan(packet)
    assert plan is not None
    seen = [addresses(rotate(packet, plan, turn))[0] for turn in range(4)]
    assert seen[0] == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert seen[1] == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.1"]
    assert len({tuple(order) for order in seen}) == 4
    assert all(sorted(order) == seen[0] for order in seen)
    assert rotate(packet, plan, 4) == packet


def test_after_a_cname_only_the_addresses_move():
    packet = response(
        RR("web.example.", QTYPE.CNAME, ttl=5, rdata=CNAME("db.example.")),
        *(RR("db.example.", QTYPE.AAAA, ttl=5, rdata=AAAA(f"fd00::{i}")) for i in range(1, 4)),
        ar=tuple(RR("ns.example.", QTYPE.A, ttl=5, rdata=A(f"192.0.2.{i}")) for i in (1, 2)),
    )
    plan = rotation_plan(packet)
    # The glue's first owner is spelled out and the second points at it: moving
    # them would break that pointer, so only the answer's AAAA run turns.
    assert plan is not None and len(plan) == 1
    turned = dns.message.from_wire(rotate(packet, plan, 1))
    assert [rrset.rdtype for rrset in turned.answer] == [dns.rdatatype.CNAME, dns.rdatatype.AAAA]
    assert [rd.to_text() for rd in turned.answer[1]] == ["fd00::2", "fd00::3", "fd00::1"]
    assert [rd.to_text() for rd in turned.additional[0]] == ["192.0.2.1", "192.0.2.2"]


def test_a_glue_run_behind_a_pointer_turns():
    # SRV targets written in the answer: the glue owners are pointers, and they turn.
    packet = response(
        RR("web.example.", QTYPE.CNAME, ttl=5, rdata=CNAME("ns.example.")),
        ar=tuple(RR("ns.example.", QTYPE.A, ttl=5, rdata=A(f"192.0.2.{i}")) for i in (1, 2)),
    )
    plan = rotation_plan(packet)
    assert plan is not None and len(plan) == 1
    turned = dns.message.from_wire(rotate(packet, plan, 1))
    assert [rd.to_text() for rd in turned.additional[0]] == ["192.0.2.2", "192.0.2.1"]


@pytest.mark.parametrize(
    "packet",
    [
        response(RR("web.example.", QTYPE.A, ttl=5, rdata=A("10.0.0.1"))),  # one record
        response(*(RR("web.example.", QTYPE.A, rdata=A(f"10.0.0.{i}")) for i in (1, 2)), rcode=3),  # not NOERROR
        response(RR("a.example.", QTYPE.A, rdata=A("10.0.0.1")), RR("b.example.", QTYPE.A, rdata=A("10.0.0.2"))),
        b"\x00\x07\x81\x80\x00\x01\x00\x05",  # truncated garbage
    ],
    ids=["single", "nxdomain", "different-owners", "malformed"],
)
def test_nothing_to_rotate(packet):
    assert rotation_plan(packet) is None


# --------------------------------------------------------------------------- through the server


@pytest.fixture
def serve(serve_zones):
    return serve_zones


async def orders(serving: Serving, name: str, count: int, tcp: bool = False) -> list[list[str]]:
    out = []
    for _ in range(count):
        reply = await ask(serving, name, "A", tcp=tcp)
        out.append([rd.to_text() for rrset in reply.answer for rd in rrset])
    return out


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_consecutive_answers_for_a_headless_service_come_in_turn(serve, tcp):
    serving = await serve()  # on by default, as kubeadm's Corefile
    seen = await orders(serving, HEADLESS, 7, tcp=tcp)
    assert all(sorted(order) == ZK_PODS for order in seen), seen  # always the same set
    assert all(a != b for a, b in zip(seen, seen[1:])), seen  # never the same order twice in a row
    assert {order[0] for order in seen} == set(ZK_PODS)  # each pod comes first in turn
    assert serving.dns.responder.hits >= 6  # rotated on the pre-encoded path, not re-answered


async def test_no_loadbalance_keeps_one_order(serve):
    serving = await serve(loadbalance=False)
    seen = await orders(serving, HEADLESS, 4)
    assert sorted(seen[0]) == ZK_PODS
    assert all(order == seen[0] for order in seen)


async def test_forwarded_answers_turn_too(serve):
    """CoreDNS's loadbalance wraps the whole server: answers from upstream (and its cache) rotate as well."""
    from dnslib import RR as ZoneRR

    from clusterdns.forward import ForwardSettings
    from tests.upstreams import FakeUpstream

    pool = [f"192.0.2.{i}" for i in (11, 12, 13, 14)]
    records = {("pool.example.com.", QTYPE.A): [ZoneRR.fromZone(f"pool.example.com. 300 IN A {ip}")[0] for ip in pool]}
    with FakeUpstream(records=records) as upstream:
        forward = ForwardSettings(upstreams=((upstream.host, upstream.port),), loop_check=False, try_timeout=0.5,
                                  timeout=1.0)
        serving = await serve(forward=forward)
        seen = await orders(serving, "pool.example.com", 5)
        off = await serve(forward=forward, loadbalance=False)
        unturned = await orders(off, "pool.example.com", 3)
    assert all(sorted(order) == pool for order in seen), seen
    assert all(a != b for a, b in zip(seen, seen[1:])), seen
    assert upstream.count("pool.example.com.") == 2  # one per server: the rest came from their caches
    assert all(order == unturned[0] for order in unturned)
