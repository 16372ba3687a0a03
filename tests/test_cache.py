"""The pre-encoded answer caches drop exactly the answers a zone change affects."""

import dns.rcode
import pytest

from clusterdns.events import Upsert
from clusterdns.settings import Settings

from .builders import endpoint_slice, namespace, service
from .dnsserver import RunningServer, answers


@pytest.fixture
def server():
    with RunningServer(settings=Settings()) as srv:
        yield srv


def apply(server, *objs):
    server.call(server.dns.sink, [Upsert(o) for o in objs])


def glue(reply):
    return sorted(rd.to_text() for rrset in reply.additional for rd in rrset)


def test_unrelated_change_keeps_cached_answers(server):
    apply(server, service("web"), service("other", cluster_ip="10.96.0.101"))
    for tcp in (False, True):
        server.query("web.default.svc.cluster.local", tcp=tcp)
        for _ in range(2):  # a negative is kept when it is asked again
            server.query("nope.default.svc.cluster.local", tcp=tcp)
    hits = server.call(lambda: server.dns.responder.hits)
    apply(server, service("other", cluster_ip="10.96.0.102"))
    assert answers(server.query("web.default.svc.cluster.local")) == ["10.96.0.100"]
    assert server.query("nope.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert server.call(lambda: server.dns.responder.hits) == hits + 2  # both still served from cache
    assert answers(server.query("other.default.svc.cluster.local")) == ["10.96.0.102"]


def test_glue_follows_a_target_that_changed(server):
    hs = service("hs", cluster_ip="None")
    apply(server, hs, endpoint_slice("hs-1", "hs", ["10.1.0.1"], hostnames={"10.1.0.1": "web-0"}))
    reply = server.query("_http._tcp.hs.default.svc.cluster.local", "SRV")
    assert glue(reply) == ["10.1.0.1"]
    # same SRV data (same hostname), new address: only the glue changes
    apply(server, endpoint_slice("hs-1", "hs", ["10.1.0.9"], hostnames={"10.1.0.9": "web-0"}))
    reply = server.query("_http._tcp.hs.default.svc.cluster.local", "SRV")
    assert answers(reply) == ["0 100 8080 web-0.hs.default.svc.cluster.local."]
    assert glue(reply) == ["10.1.0.9"]


def test_cname_chain_follows_its_target(server):
    alias = service("alias", cluster_ip=None, type="ExternalName", externalName="web.default.svc.cluster.local")
    apply(server, alias, service("web"))
    assert answers(server.query("alias.default.svc.cluster.local"), "A") == ["10.96.0.100"]
    apply(server, service("web", cluster_ip="10.96.0.200"))
    assert answers(server.query("alias.default.svc.cluster.local"), "A") == ["10.96.0.200"]


def test_new_empty_non_terminals_and_namespaces_are_seen(server):
    assert server.query("shop.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert server.query("10-1-2-3.shop.pod.cluster.local").rcode() == dns.rcode.NXDOMAIN
    apply(server, service("cart", ns="shop"))  # shop.svc.cluster.local now exists, as a parent
    assert server.query("shop.svc.cluster.local").rcode() == dns.rcode.NOERROR
    assert answers(server.query("10-1-2-3.shop.pod.cluster.local")) == ["10.1.2.3"]
    assert server.query("_tcp.cart.shop.svc.cluster.local").rcode() == dns.rcode.NOERROR
    apply(server, namespace("empty"))
    assert server.query("empty.svc.cluster.local").rcode() == dns.rcode.NOERROR


def test_apex_soa_serial_is_never_stale(server):
    first = server.query("cluster.local", "SOA").answer[0][0].serial
    apply(server, service("web"))
    assert server.query("cluster.local", "SOA").answer[0][0].serial > first
