"""``--pods verified``: A-B-C-D.NS.pod.ZONE answers only for an address a pod in NS has, looked up in the
zone's pod index at query time (as CoreDNS does), fed by a real watch of the fake API server and asked over
real UDP.  Pods coming and going must drop exactly the cached answers that read them.
"""

from __future__ import annotations

import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from clusterdns.serving import ServeOptions, Serving
from clusterdns.settings import Settings
from tests.fake_apiserver import FakeApiServer, namespace, pod
from tests.test_kube_e2e import WAIT, addresses, ask, eventually

VERIFIED = Settings(pods="verified")
NXDOMAIN = dns.rcode.NXDOMAIN


@pytest.fixture
def start(kubeconfig, started):
    """Start a Serving against the fake API server (closed after the test)."""

    async def make(settings: Settings = VERIFIED) -> Serving:
        return await started(Serving(ServeOptions(settings=settings, listen=[("127.0.0.1", 0)], http=None,
                                                  kubeconfig=str(kubeconfig), startup_timeout=WAIT)))

    return make


def host_network_pod(name: str, ns: str, ip: str) -> dict:
    obj = pod(name, namespace=ns, ip=ip)
    obj["spec"]["hostNetwork"] = True
    return obj


async def test_a_pod_that_comes_and_goes_is_answered_then_denied_through_the_cache(
        fake_apiserver: FakeApiServer, start):
    fake_apiserver.add(namespace("default"))
    serving = await start()
    name = "10-2-0-7.default.pod.cluster.local"
    assert await addresses(serving, name) == NXDOMAIN
    hits = serving.dns.responder.hits
    assert await addresses(serving, name) == NXDOMAIN
    assert serving.dns.responder.hits == hits + 1  # the denial is cached: the pod's arrival must drop it

    fake_apiserver.add(pod("web-1", ip="10.2.0.7"))

    async def answered():
        return await addresses(serving, name) == ["10.2.0.7"]

    await eventually(answered)
    reply = await ask(serving, "10-2-0-7.DEFAULT.pod.cluster.local")
    assert [rrset.name.to_text() for rrset in reply.answer] == ["10-2-0-7.DEFAULT.pod.cluster.local."]  # asked case
    assert reply.answer[0].ttl == VERIFIED.ttl

    fake_apiserver.delete("Pod", "default", "web-1")

    async def denied():
        return await addresses(serving, name) == NXDOMAIN

    await eventually(denied)


async def test_nodata_nxdomain_and_the_reasons(fake_apiserver: FakeApiServer, start):
    fake_apiserver.add(namespace("default"))
    fake_apiserver.add(namespace("shop"))
    fake_apiserver.add(pod("web-1", ip="10.2.0.7"))
    fake_apiserver.add(pod("v6", ip="fd00::7"))
    serving = await start()

    assert await addresses(serving, "10-2-0-7.default.pod.cluster.local") == ["10.2.0.7"]
    assert await addresses(serving, "fd00--7.default.pod.cluster.local", "AAAA") == ["fd00::7"]
    assert await addresses(serving, "fd00-0-0-0-0-0-0-7.default.pod.cluster.local", "AAAA") == ["fd00::7"]

    nodata = await ask(serving, "10-2-0-7.default.pod.cluster.local", "AAAA")  # the pod exists, not with IPv6
    assert (nodata.rcode(), nodata.answer) == (dns.rcode.NOERROR, [])
    assert [rrset.rdtype for rrset in nodata.authority] == [dns.rdatatype.SOA]
    assert (await ask(serving, "default.pod.cluster.local")).rcode() == dns.rcode.NOERROR  # the parent: NODATA

    for name, why in (
        ("10-2-0-7.shop.pod.cluster.local", "no pod with IP 10.2.0.7 in namespace shop (--pods verified)"),
        ("10-2-0-8.default.pod.cluster.local", "no pod with IP 10.2.0.8 in namespace default (--pods verified)"),
        ("x.10-2-0-7.default.pod.cluster.local", "too many labels: pod names are A-B-C-D.default.pod.cluster.local"),
    ):
        reply = await ask(serving, name, edns=True)
        assert reply.rcode() == NXDOMAIN, name
        assert [rrset.rdtype for rrset in reply.authority] == [dns.rdatatype.SOA]
        assert [o.text for o in reply.options if o.otype == dns.edns.EDE] == [why]


async def test_addresses_shared_by_pods_stay_until_the_last_one_goes(fake_apiserver: FakeApiServer, start):
    for ns in ("default", "shop"):
        fake_apiserver.add(namespace(ns))
    # hostNetwork pods have their node's address: two in one namespace, one in another
    fake_apiserver.add(host_network_pod("agent-a", "default", "192.168.0.10"))
    fake_apiserver.add(host_network_pod("agent-b", "default", "192.168.0.10"))
    fake_apiserver.add(host_network_pod("agent-c", "shop", "192.168.0.10"))
    serving = await start()
    in_default, in_shop = "192-168-0-10.default.pod.cluster.local", "192-168-0-10.shop.pod.cluster.local"
    assert await addresses(serving, in_default) == ["192.168.0.10"]
    assert await addresses(serving, in_shop) == ["192.168.0.10"]

    fake_apiserver.delete("Pod", "shop", "agent-c")

    async def shop_gone():
        return await addresses(serving, in_shop) == NXDOMAIN

    await eventually(shop_gone)
    fake_apiserver.delete("Pod", "default", "agent-a")
    fake_apiserver.add(pod("marker", ip="10.2.0.99"))  # applied after the delete: once it answers, so has the delete
    await eventually(lambda: _answers(serving, "10-2-0-99.default.pod.cluster.local"))
    assert await addresses(serving, in_default) == ["192.168.0.10"]  # agent-b still has it

    fake_apiserver.delete("Pod", "default", "agent-b")

    async def default_gone():
        return await addresses(serving, in_default) == NXDOMAIN

    await eventually(default_gone)


@pytest.mark.parametrize("change", ["terminating", "finished", "new address"])
async def test_a_pod_that_stops_answering_for_an_address(fake_apiserver: FakeApiServer, start, change: str):
    fake_apiserver.add(namespace("default"))
    fake_apiserver.add(pod("web-1", ip="10.2.0.7"))
    serving = await start()
    name = "10-2-0-7.default.pod.cluster.local"
    assert await addresses(serving, name) == ["10.2.0.7"]
    if change == "terminating":
        obj = pod("web-1", ip="10.2.0.7")
        obj["metadata"]["deletionTimestamp"] = "2026-12-01T12:00:00Z"
    elif change == "finished":
        obj = pod("web-1", ip="10.2.0.7", phase="Failed")
    else:
        obj = pod("web-1", ip="10.2.0.8")
    fake_apiserver.modify(obj)

    async def denied():
        return await addresses(serving, name) == NXDOMAIN

    await eventually(denied)
    if change == "new address":
        assert await addresses(serving, "10-2-0-8.default.pod.cluster.local") == ["10.2.0.8"]


async def test_verified_and_pod_names_together_keep_the_pod_name_and_its_ptr(fake_apiserver: FakeApiServer, start):
    fake_apiserver.add(namespace("jobs"))
    fake_apiserver.add(pod("driver", namespace="jobs", ip="10.2.3.4"))
    serving = await start(Settings(pods="verified", pod_names=True))
    assert await addresses(serving, "10-2-3-4.jobs.pod.cluster.local") == ["10.2.3.4"]
    assert await addresses(serving, "driver.jobs.pod.cluster.local") == ["10.2.3.4"]
    assert await addresses(serving, "4.3.2.10.in-addr.arpa", "PTR") == ["driver.jobs.pod.cluster.local."]
    fake_apiserver.delete("Pod", "jobs", "driver")

    async def all_gone():
        return (await addresses(serving, "10-2-3-4.jobs.pod.cluster.local") == NXDOMAIN
                and await addresses(serving, "4.3.2.10.in-addr.arpa", "PTR") == NXDOMAIN)

    await eventually(all_gone)


async def _answers(serving, name: str) -> bool:
    return await addresses(serving, name) != NXDOMAIN


# ------------------------------------------------------------ what a batch drops from the answer cache


@pytest.fixture
def server():
    from tests.dnsserver import RunningServer

    with RunningServer(settings=VERIFIED) as srv:  # manifest mode: "default" exists; batches applied by hand
        yield srv


def apply(server, *events):
    server.call(server.dns.sink, list(events))


def hits(server) -> int:
    return server.call(lambda: server.dns.responder.hits)


def test_a_pod_batch_drops_only_the_answers_of_its_pod_names(server):
    from clusterdns.events import Upsert

    from .builders import pod as built_pod, service

    apply(server, Upsert(service("web")), Upsert(built_pod("a", "10.2.0.1")))
    for name in ("web.default.svc.cluster.local", "10-2-0-1.default.pod.cluster.local",
                 "10-2-0-2.default.pod.cluster.local"):
        server.query(name)
        server.query(name)  # a negative is kept once asked again
    before = hits(server)
    apply(server, Upsert(built_pod("b", "10.2.0.2")))
    assert [rd.to_text() for rrset in server.query("10-2-0-2.default.pod.cluster.local").answer for rd in rrset] \
        == ["10.2.0.2"]
    assert server.query("web.default.svc.cluster.local").answer  # untouched: still from the cache
    assert server.query("10-2-0-1.default.pod.cluster.local").answer
    assert hits(server) == before + 2


def test_a_batch_moving_many_pod_addresses_starts_the_answer_cache_afresh(server, monkeypatch):
    from clusterdns import zone
    from clusterdns.events import Replace, Upsert

    from .builders import pod as built_pod, service

    monkeypatch.setattr(zone, "POD_CHANGES_NAMED", 3)
    apply(server, Upsert(service("web")))
    for _ in range(2):
        server.query("web.default.svc.cluster.local")
        server.query("10-2-0-4.default.pod.cluster.local")
    before = hits(server)
    apply(server, Replace("Pod", tuple(built_pod(f"p{i}", f"10.2.0.{i}") for i in range(1, 5))))  # a relist of 4
    assert [rd.to_text() for rrset in server.query("10-2-0-4.default.pod.cluster.local").answer for rd in rrset] \
        == ["10.2.0.4"]
    assert server.query("web.default.svc.cluster.local").answer
    assert hits(server) == before  # both answered afresh: the batch said "everything changed"
