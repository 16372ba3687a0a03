"""Extended DNS Errors (RFC 8914): every miss says why, over real UDP and TCP, and only to EDNS clients."""

from __future__ import annotations

import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from clusterdns.cli import build_parser, settings_from
from clusterdns.events import Delete, Upsert
from clusterdns.settings import Settings
from tests import builders
from tests.conftest import ZONES
from tests.dnsserver import RunningServer


def ede(reply: dns.message.Message) -> list[tuple[int, str]]:
    return [(int(o.code), o.text) for o in reply.options if o.otype == dns.edns.EDE]


MISSES = [
    ("foo.defualt.svc.cluster.local", "A", "NXDOMAIN", 'no namespace "defualt" (did you mean "default"?)'),
    ("kubia.shop.svc.cluster.local", "A", "NXDOMAIN", 'no service "kubia" in namespace "shop"; it exists in "default"'),
    (
        "busybox-3.default-subdomain.default.svc.cluster.local", "A", "NXDOMAIN",
        'no endpoint named "busybox-3" in default-subdomain (endpoints: busybox-1, busybox-2)',
    ),
    ("_htp._tcp.kubia.default.svc.cluster.local", "SRV", "NXDOMAIN", 'no port named "htp" on kubia (ports: http)'),
    ("_dns._tcp.kube-dns.kube-system.svc.cluster.local", "SRV", "NXDOMAIN", 'port "dns" on kube-dns is udp, not tcp'),
    ("kubia.svc.cluster.local", "A", "NXDOMAIN", 'no namespace "kubia"; a service "kubia" exists in "default"'),
    (
        "kubia.default.cluster.local", "A", "NXDOMAIN",
        "no kubia.default.cluster.local: services are SERVICE.NAMESPACE.svc.cluster.local "
        "(try kubia.default.svc.cluster.local)",
    ),
    ("kubia.default.svc.cluster.local", "AAAA", "NOERROR", "kubia.default.svc.cluster.local has no AAAA record (it has A, SRV)"),
    ("default.svc.cluster.local", "A", "NOERROR", 'namespace "default" exists; services are SERVICE.default.svc.cluster.local'),
    (
        "web.default.pod.cluster.local", "A", "NXDOMAIN",
        '"web" is not a dashed IP address (pod names look like 10-244-1-10.default.pod.cluster.local)',
    ),
    ("4.3.2.1.in-addr.arpa", "PTR", "NXDOMAIN", "no Service or named endpoint has the address 1.2.3.4"),
]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("name,qtype,rcode,text", MISSES, ids=[m[0] + "/" + m[1] for m in MISSES])
def test_each_miss_says_why(zones_server, name, qtype, rcode, text, tcp):
    reply = zones_server.query(name, qtype, use_edns=0, tcp=tcp)
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert not reply.answer
    assert ede(reply) == [(0, text)]


def test_outside_the_zones_is_refused_as_not_authoritative(zones_server):
    reply = zones_server.query("example.com", "A", use_edns=0)
    assert reply.rcode() == dns.rcode.REFUSED
    assert ede(reply) == [(20, "outside the cluster zones and forwarding is off")]


def test_repeats_from_the_caches_carry_the_same_reason(zones_server):
    name = "nothere.default.svc.cluster.local"
    first = zones_server.query(name, "A", use_edns=0)
    again = zones_server.query(name.upper(), "A", use_edns=0)  # normalised-question cache, letter case echoed
    assert ede(first) == ede(again) == [(0, 'no service "nothere" in namespace "default"')]
    assert str(again.question[0].name) == name.upper() + "."


def test_positive_answers_carry_no_reason(zones_server):
    reply = zones_server.query("kubia.default.svc.cluster.local", "A", use_edns=0)
    assert reply.answer and ede(reply) == []


def _without_serial(reply: dns.message.Message) -> bytes:
    for rrset in reply.authority:
        for rd in rrset:
            if rd.rdtype == dns.rdatatype.SOA:
                rrset.update(dns.rrset.from_rdata(rrset.name, rrset.ttl, rd.replace(serial=0)))
    return reply.to_wire()


def test_queries_without_edns_get_exactly_what_they_got_before(zones_server):
    with RunningServer([ZONES], settings=Settings(explain=False)) as plain:
        for name, qtype, _, _ in MISSES + [("example.com", "A", "", "")]:
            query = dns.message.make_query(name, qtype, use_edns=False)
            ours, before = zones_server.send(query), plain.send(query)
            assert not ours.options and ours.edns < 0
            assert _without_serial(ours) == _without_serial(before), name


def test_no_explain_leaves_the_option_out():
    with RunningServer([ZONES], settings=Settings(explain=False)) as server:
        reply = server.query("foo.defualt.svc.cluster.local", "A", use_edns=0)
        assert reply.rcode() == dns.rcode.NXDOMAIN and reply.edns == 0
        assert ede(reply) == []


def test_no_explain_flag():
    parser = build_parser()
    assert settings_from(parser.parse_args(["serve", "--no-explain"])).explain is False
    assert settings_from(parser.parse_args(["serve"])).explain is True


def test_headless_service_with_no_ready_endpoints(tmp_path):
    (tmp_path / "zk.yaml").write_text(
        """
apiVersion: v1
kind: Service
metadata: {name: zk-hs, namespace: default}
spec: {clusterIP: None, ports: [{name: server, port: 2888}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: zk-hs-1, namespace: default, labels: {kubernetes.io/service-name: zk-hs}}
addressType: IPv4
endpoints:
- {addresses: [10.244.1.40], conditions: {ready: false}}
- {addresses: [10.244.1.41], conditions: {ready: false}}
- {addresses: [10.244.1.42], conditions: {ready: false}}
ports: [{name: server, port: 2888, protocol: TCP}]
"""
    )
    with RunningServer([tmp_path]) as server:
        reply = server.query("zk-hs.default.svc.cluster.local", "A", use_edns=0)
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert ede(reply) == [(0, "headless service zk-hs has 0 ready endpoints (3 not ready)")]


def test_pod_records_disabled():
    with RunningServer([ZONES], settings=Settings(pods="disabled")) as server:
        reply = server.query("10-244-1-10.default.pod.cluster.local", "A", use_edns=0)
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert ede(reply) == [(0, "pod records are disabled (--pods disabled)")]


def test_verified_pods_name_the_missing_pod():
    with RunningServer([ZONES], settings=Settings(pods="verified")) as server:
        assert server.query("10-244-1-10.default.pod.cluster.local", "A", use_edns=0).answer
        reply = server.query("10-9-9-9.default.pod.cluster.local", "A", use_edns=0)
        assert ede(reply) == [(0, "no pod with IP 10.9.9.9 in namespace default (--pods verified)")]


def test_a_cached_reason_follows_changes_that_leave_the_name_alone():
    """kubia.shop's records never change, but its reason does when kubia in default goes away."""
    with RunningServer([ZONES]) as server:
        name = "kubia.shop.svc.cluster.local"
        assert ede(server.query(name, "A", use_edns=0)) == [(0, 'no service "kubia" in namespace "shop"; it exists in "default"')]
        server.call(server.dns.sink, [Delete(("Service", "default", "kubia"))])
        assert ede(server.query(name, "A", use_edns=0)) == [(0, 'no service "kubia" in namespace "shop"')]
        server.call(server.dns.sink, [Upsert(builders.service("kubia", ns="prod", cluster_ip="10.96.7.7"))])
        assert ede(server.query(name, "A", use_edns=0)) == [(0, 'no service "kubia" in namespace "shop"; it exists in "prod"')]


def test_not_ready_counts_update_the_reason():
    with RunningServer([ZONES]) as server:
        server.call(server.dns.sink, [Upsert(builders.service("db", cluster_ip=None, clusterIP="None"))])
        server.call(server.dns.sink, [Upsert(builders.endpoint_slice("db-1", "db", ["10.1.0.1"], ready=False))])
        name = "db.default.svc.cluster.local"
        assert ede(server.query(name, "A", use_edns=0)) == [(0, "headless service db has 0 ready endpoints (1 not ready)")]
        server.call(server.dns.sink, [Upsert(builders.endpoint_slice("db-1", "db", ["10.1.0.1", "10.1.0.2"], ready=False))])
        assert ede(server.query(name, "A", use_edns=0)) == [(0, "headless service db has 0 ready endpoints (2 not ready)")]


def test_forwarded_names_carry_the_upstreams_failure():
    from clusterdns.forward import ForwardSettings, Stub

    from .upstreams import FakeUpstream, dead_address

    dead = dead_address()
    forward = ForwardSettings(upstreams=(dead,), try_timeout=0.3, timeout=0.6, health_check=0.05, loop_check=False)
    with RunningServer([ZONES], forward=forward) as server:
        reply = server.query("example.com", "A", use_edns=0)
        assert reply.rcode() == dns.rcode.SERVFAIL
        [(code, text)] = ede(reply)
        assert code == 22 and text.startswith(f"no upstream answered: {dead[0]}:{dead[1]}: ")
        plain = server.query("example.com", "A", use_edns=False)  # without EDNS: no OPT, as before
        assert plain.rcode() == dns.rcode.SERVFAIL and plain.edns < 0
    with FakeUpstream() as corp:
        stubs_only = ForwardSettings(upstreams=(), stubs=(Stub("corp.example.", ((corp.host, corp.port),)),), loop_check=False)
        with RunningServer([ZONES], forward=stubs_only) as server:
            reply = server.query("example.com", "A", use_edns=0)
            assert reply.rcode() == dns.rcode.REFUSED
            assert ede(reply) == [(20, "outside the cluster zones and no forward zone matches")]
