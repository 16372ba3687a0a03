"""--autopath: a dnspython client set up like a pod (search list, ndots 5, bound to the pod's own
127.0.0.x address) gets the same final answers with and without it, in fewer round trips."""

from __future__ import annotations

import dns.exception
import dns.name
import dns.resolver
import pytest

from clusterdns.cli import build_parser, settings_from
from clusterdns.settings import Settings
from tests.conftest import ZONES
from tests.dnsserver import RunningServer

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop}
spec: {containers: [{name: c}]}
status: {phase: Running, podIP: 127.0.0.5, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: node-agent, namespace: shop}
spec: {hostNetwork: true, containers: [{name: c}]}
status: {phase: Running, podIP: 127.0.0.6, conditions: [{type: Ready, status: "True"}]}
"""
SEARCH = ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local")
NAMES = [  # (what a program in the pod looks up, type)
    ("cart", "A"),  # a short name in the pod's own namespace
    ("kubia", "A"),  # a short name that is nowhere in shop
    ("kubia.default", "A"),  # svc.ns
    ("kube-dns.kube-system", "A"),
    ("kubia.default.svc", "A"),
    ("_http._tcp.kubia.default", "SRV"),
    ("kubia.default.svc.cluster.local", "AAAA"),  # exists without AAAA: NODATA
    ("example.com", "A"),  # outside the cluster (forwarding off: REFUSED as written)
]


def resolver(port: int) -> dns.resolver.Resolver:
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = ["127.0.0.1"]
    res.port = port
    res.search = [dns.name.from_text(domain) for domain in SEARCH]
    res.ndots = 5
    res.use_search_by_default = True
    res.timeout = res.lifetime = 3
    res.cache = None
    return res


def counted(server: RunningServer) -> RunningServer:
    """Count the queries the server's listeners hand to its responder (answered here or forwarded)."""
    responder = server.dns.responder
    if not hasattr(responder, "queries"):
        responder.queries = 0
        respond = responder.respond

        def counting(*args):
            responder.queries += 1
            return respond(*args)

        responder.respond = counting
    return server


def lookup(server: RunningServer, name: str, rdtype: str, source: str) -> tuple[str, int]:
    """(final answer as text, round trips the server saw)."""
    responder = counted(server).dns.responder
    before = server.call(lambda: responder.queries)
    try:
        result = resolver(server.port).resolve(name, rdtype, source=source)
        final = f"{result.canonical_name} " + " ".join(sorted(rd.to_text() for rd in result.rrset))
    except dns.exception.DNSException as exc:
        final = type(exc).__name__
    return final, server.call(lambda: responder.queries) - before


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    pods = tmp_path_factory.mktemp("pods") / "pods.yaml"
    pods.write_text(PODS)
    with RunningServer([ZONES, pods], settings=Settings(pods="verified")) as plain, \
            RunningServer([ZONES, pods], settings=Settings(pods="verified", autopath=True)) as searched:
        yield plain, searched


@pytest.mark.parametrize("name,rdtype", NAMES)
def test_same_final_answers_with_and_without_autopath(servers, name, rdtype):
    plain, searched = servers
    without, trips_without = lookup(plain, name, rdtype, "127.0.0.5")
    with_autopath, trips_with = lookup(searched, name, rdtype, "127.0.0.5")
    assert with_autopath == without
    assert trips_with <= trips_without


def test_round_trips(servers):
    plain, searched = servers
    counts = {name: (lookup(plain, name, t, "127.0.0.5")[1], lookup(searched, name, t, "127.0.0.5")[1]) for name, t in NAMES}
    assert counts["cart"] == (1, 1)
    assert counts["kubia.default"] == (2, 1)
    assert counts["kubia.default.svc.cluster.local"] == (4, 1)
    assert counts["example.com"] == (4, 4)  # nothing in the cluster: the walk is the client's (no forwarding here)
    print("round trips (without autopath, with):", counts)


@pytest.fixture(scope="module")
def forwarding(tmp_path_factory):
    """The same pair, forwarding to a test upstream on 127.0.0.1 (example.com has an address there)."""
    from clusterdns.forward import ForwardSettings

    from .upstreams import FakeUpstream

    pods = tmp_path_factory.mktemp("pods") / "pods.yaml"
    pods.write_text(PODS)
    with FakeUpstream() as upstream:
        forward = ForwardSettings(upstreams=((upstream.host, upstream.port),), loop_check=False)
        with RunningServer([ZONES, pods], settings=Settings(pods="verified"), forward=forward) as plain, \
                RunningServer([ZONES, pods], settings=Settings(pods="verified", autopath=True), forward=forward) as searched:
            yield plain, searched, upstream


@pytest.mark.parametrize("name,rdtype", NAMES + [("nosuch.example", "A")])
def test_with_forwarding_outside_names_are_tried_as_written_by_the_server(forwarding, name, rdtype):
    plain, searched, _ = forwarding
    without, trips_without = lookup(plain, name, rdtype, "127.0.0.5")
    with_autopath, trips_with = lookup(searched, name, rdtype, "127.0.0.5")
    assert with_autopath == without
    assert trips_with <= trips_without


def test_round_trips_with_forwarding(forwarding):
    plain, searched, upstream = forwarding
    names = NAMES + [("nosuch.example", "A")]
    counts = {name: (lookup(plain, name, t, "127.0.0.5")[1], lookup(searched, name, t, "127.0.0.5")[1]) for name, t in names}
    assert counts["example.com"] == (4, 1)  # found upstream: one round trip
    assert counts["nosuch.example"][1] == 4  # NXDOMAIN upstream too: the pod's resolver walks on
    assert counts["kubia.default"] == (2, 1)
    print("round trips with forwarding (without autopath, with):", counts)
    reply = resolver(searched.port).resolve("example.com", "A", source="127.0.0.5").response
    assert [rrset.to_text() for rrset in reply.answer] == [
        "example.com.shop.svc.cluster.local. 5 IN CNAME example.com.",
        "example.com. 300 IN A 192.0.2.10",
    ]


def test_the_answer_is_a_cname_to_the_first_candidate_that_exists(servers):
    _, searched = servers
    reply = resolver(searched.port).resolve("kubia.default.shop.svc.cluster.local.", "A", source="127.0.0.5").response
    assert [rrset.to_text() for rrset in reply.answer] == [
        "kubia.default.shop.svc.cluster.local. 5 IN CNAME kubia.default.svc.cluster.local.",
        "kubia.default.svc.cluster.local. 5 IN A 10.96.100.10",
    ]


@pytest.mark.parametrize("source", ["127.0.0.9", "127.0.0.6"], ids=["unknown client", "hostNetwork pod"])
def test_unknown_clients_and_host_network_pods_get_ordinary_answers(servers, source):
    _, searched = servers
    final, trips = lookup(searched, "kubia.default", "A", source)
    assert final == "kubia.default.svc.cluster.local. 10.96.100.10" and trips == 2


def test_autopath_needs_verified_pods():
    parser = build_parser()
    with pytest.raises(ValueError, match="--autopath needs --pods verified"):
        settings_from(parser.parse_args(["serve", "--autopath"]))
    assert settings_from(parser.parse_args(["serve", "--autopath", "--pods", "verified"])).autopath


def test_a_pod_that_comes_goes_and_comes_back_elsewhere_is_known_by_its_current_address():
    from clusterdns.events import Delete, Upsert

    from .builders import pod

    with RunningServer([ZONES], settings=Settings(pods="verified", autopath=True)) as server:
        def first_search_name(source: str) -> list[str]:
            reply = resolver(server.port).resolve("kubia.default.shop.svc.cluster.local.", "A", source=source,
                                                  raise_on_no_answer=False).response
            return [rrset.to_text() for rrset in reply.answer]

        def nxdomain(source: str) -> bool:
            try:
                first_search_name(source)
            except dns.resolver.NXDOMAIN:
                return True
            return False

        cname = "kubia.default.shop.svc.cluster.local. 5 IN CNAME kubia.default.svc.cluster.local."
        assert nxdomain("127.0.0.7")  # nobody known there: answered as asked
        server.call(server.dns.sink, [Upsert(pod("walker", "127.0.0.7", ns="shop"))])
        assert first_search_name("127.0.0.7")[0] == cname
        server.call(server.dns.sink, [Upsert(pod("walker", "127.0.0.8", ns="shop"))])  # a new address
        assert nxdomain("127.0.0.7")
        assert first_search_name("127.0.0.8")[0] == cname
        server.call(server.dns.sink, [Delete(("Pod", "shop", "walker"))])
        assert nxdomain("127.0.0.8")
