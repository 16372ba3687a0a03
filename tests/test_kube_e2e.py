"""The whole server fed by a watch: the real kubernetes client against the in-process fake API
server, answers checked with dnspython over real sockets, /ready and /metrics over real HTTP.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import dns.asyncquery
import dns.edns
import dns.message
import dns.rcode
import pytest

from clusterdns.serving import ServeOptions, Serving
from clusterdns.settings import Settings
from clusterdns.sources.watch_options import WatchOptions
from tests.fake_apiserver import (
    FakeApiServer,
    endpoint_slice,
    namespace,
    service,
)

WAIT = 5.0


async def ask(serving: Serving, name: str, qtype: str = "A", tcp: bool = False, edns: bool = False) -> dns.message.Message:
    host, port = serving.dns_server.addresses[0]
    q = dns.message.make_query(name, qtype, use_edns=0 if edns else False)
    if tcp:
        return await dns.asyncquery.tcp(q, host, port=port, timeout=2)
    return await dns.asyncquery.udp(q, host, port=port, timeout=2)


async def addresses(serving: Serving, name: str, qtype: str = "A") -> list[str] | int:
    """Sorted answer data, or the rcode when there is no answer."""
    reply = await ask(serving, name, qtype)
    data = sorted(rd.to_text() for rrset in reply.answer for rd in rrset)
    return data if data else reply.rcode()


async def eventually(check, timeout: float = WAIT) -> float:
    """Await ``check()`` (async) becoming true; returns the seconds it took. Bounded."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def http_get(serving: Serving, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", serving.http.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), WAIT)
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


@pytest.fixture
def start(kubeconfig: Path, started):
    """Start Serving instances against the fake API server; close them all after the test."""

    async def make(**overrides) -> Serving:
        options = ServeOptions(
            settings=overrides.pop("settings", Settings()),
            listen=[("127.0.0.1", 0)],
            http=("127.0.0.1", 0),
            kubeconfig=str(kubeconfig),
            startup_timeout=overrides.pop("startup_timeout", WAIT),
            **overrides,
        )
        return await started(Serving(options))

    return make


def headless(name: str, ns: str = "default") -> dict:
    return service(name, namespace=ns, ip="None")


async def test_headless_pod_restart_with_new_ip_is_served_within_a_second(fake_apiserver: FakeApiServer, start):
    fake_apiserver.add(headless("db"))
    fake_apiserver.add(endpoint_slice("db-1", "db", addresses=("10.1.0.1", "10.1.0.2")))
    serving = await start()
    assert await addresses(serving, "db.default.svc.cluster.local") == ["10.1.0.1", "10.1.0.2"]
    fake_apiserver.modify(endpoint_slice("db-1", "db", addresses=("10.1.0.1", "10.1.0.9")))

    async def moved():
        return await addresses(serving, "db.default.svc.cluster.local") == ["10.1.0.1", "10.1.0.9"]

    assert await eventually(moved) < 1.0


async def test_deleted_service_disappears_and_external_name_follows_changes(fake_apiserver: FakeApiServer, start):
    fake_apiserver.add(service("web", ip="10.96.0.5"))
    fake_apiserver.add(service("ext", ip=None, type="ExternalName", externalName="a.example.com", clusterIPs=None, selector=None))
    serving = await start()
    assert await addresses(serving, "web.default.svc.cluster.local") == ["10.96.0.5"]
    assert await addresses(serving, "ext.default.svc.cluster.local") == ["a.example.com."]
    fake_apiserver.delete("Service", "default", "web")
    fake_apiserver.modify(service("ext", ip=None, type="ExternalName", externalName="b.example.com", clusterIPs=None, selector=None))

    async def gone():
        return await addresses(serving, "web.default.svc.cluster.local") == dns.rcode.NXDOMAIN

    async def retargeted():
        return await addresses(serving, "ext.default.svc.cluster.local") == ["b.example.com."]

    await eventually(gone)
    await eventually(retargeted)


async def test_410_mid_stream_loses_nothing_and_resurrects_nothing(fake_apiserver: FakeApiServer, start):
    for i in range(5):
        fake_apiserver.add(service(f"svc{i}", ip=f"10.96.1.{i + 1}"))
    serving = await start()
    await fake_apiserver.await_for(lambda api: api.open_watches("services") > 0)  # the watch to break is open
    relists_before = len(fake_apiserver.lists("services"))
    # Changes the watch will not see: the stream is expired and history compacted, so the
    # client must relist; svc0 deleted while away must vanish, svc9 added must appear.
    fake_apiserver.stall_watches("services")
    fake_apiserver.delete("Service", "default", "svc0")
    fake_apiserver.add(service("svc9", ip="10.96.1.99"))
    fake_apiserver.compact()
    fake_apiserver.expire_watches("services")

    async def caught_up():
        # svc1..svc4 must answer on every poll: a relist never opens an NXDOMAIN window
        for i in range(1, 5):
            assert await addresses(serving, f"svc{i}.default.svc.cluster.local") == [f"10.96.1.{i + 1}"]
        return (
            await addresses(serving, "svc0.default.svc.cluster.local") == dns.rcode.NXDOMAIN
            and await addresses(serving, "svc9.default.svc.cluster.local") == ["10.96.1.99"]
        )

    await eventually(caught_up)
    assert len(fake_apiserver.lists("services")) > relists_before


async def test_api_vanishing_for_10s_keeps_answers_flowing_and_recovers(fake_apiserver: FakeApiServer, start):
    fake_apiserver.add(service("web", ip="10.96.0.5"))
    serving = await start()
    fake_apiserver.unavailable_for(60)  # ended below by come_back(), after the checks made during it
    fake_apiserver.drop_connections()
    deadline = time.monotonic() + 10
    answered = 0
    while time.monotonic() < deadline:  # the whole outage: every query answered from the last state
        assert await addresses(serving, "web.default.svc.cluster.local") == ["10.96.0.5"]
        answered += 1
        await asyncio.sleep(0.1)
    status, _ = await http_get(serving, "/ready")
    assert status == 200  # within the grace period
    _, metrics = await http_get(serving, "/metrics")
    assert "clusterdns_api_reachable 0.0" in metrics.splitlines()  # the outage is reported
    fake_apiserver.come_back()  # the API is back: a change made now arrives
    fake_apiserver.modify(service("web", ip="10.96.0.6"))

    async def recovered():
        return await addresses(serving, "web.default.svc.cluster.local") == ["10.96.0.6"]

    await eventually(recovered, timeout=15)
    assert answered > 50

    async def reachable_again():
        _, metrics = await http_get(serving, "/metrics")
        return "clusterdns_api_reachable 1.0" in metrics.splitlines()  # and the recovery too

    await eventually(reachable_again)


async def test_thousand_services_over_several_pages(fake_apiserver: FakeApiServer, start):
    for i in range(1000):
        fake_apiserver.add(service(f"s{i}", ip=f"10.97.{i // 250}.{i % 250 + 1}"))
    serving = await start(watch=WatchOptions(page_size=300))
    pages = [r for r in fake_apiserver.lists("services")]
    assert len(pages) >= 4 and any("continue" in r.params for r in pages)
    assert serving.dns.cluster.count("Service") == 1000
    for i in (0, 499, 999):
        assert await addresses(serving, f"s{i}.default.svc.cluster.local") == [f"10.97.{i // 250}.{i % 250 + 1}"]


async def test_namespace_filter(fake_apiserver: FakeApiServer, start):
    fake_apiserver.add(namespace("a"))
    fake_apiserver.add(namespace("b"))
    fake_apiserver.add(service("web", namespace="a", ip="10.96.0.5"))
    fake_apiserver.add(service("web", namespace="b", ip="10.96.0.6"))
    serving = await start(namespaces=frozenset({"a"}))
    assert await addresses(serving, "web.a.svc.cluster.local") == ["10.96.0.5"]
    assert await addresses(serving, "web.b.svc.cluster.local") == dns.rcode.NXDOMAIN
    assert await addresses(serving, "b.svc.cluster.local") == dns.rcode.NXDOMAIN
    assert (await ask(serving, "a.svc.cluster.local")).rcode() == dns.rcode.NOERROR


async def test_servfail_and_not_ready_until_synced(fake_apiserver: FakeApiServer, start):
    fake_apiserver.add(service("web", ip="10.96.0.5"))
    fake_apiserver.forbid("endpointslices")
    serving = await start(startup_timeout=0.5)
    status, body = await http_get(serving, "/ready")
    assert status == 503 and "EndpointSlice" in body
    assert await addresses(serving, "web.default.svc.cluster.local") == ["10.96.0.5"]  # what is known answers
    assert await addresses(serving, "nope.default.svc.cluster.local") == dns.rcode.SERVFAIL  # misses are not vouched for
    fake_apiserver.clear_faults()

    async def synced():
        return await addresses(serving, "nope.default.svc.cluster.local") == dns.rcode.NXDOMAIN

    await eventually(synced, timeout=15)
    assert (await http_get(serving, "/ready"))[0] == 200


async def test_metrics_use_coredns_names(fake_apiserver: FakeApiServer, start):
    fake_apiserver.add(service("web", ip="10.96.0.5"))
    serving = await start()
    for _ in range(3):
        await ask(serving, "web.default.svc.cluster.local")
    await ask(serving, "nope.default.svc.cluster.local", tcp=True)
    status, body = await http_get(serving, "/metrics")
    assert status == 200
    lines = body.splitlines()

    def value(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))

    assert value("coredns_dns_requests_total{") >= 4
    assert value('coredns_dns_responses_total{') >= 4
    assert any(line.startswith("coredns_dns_request_duration_seconds_bucket{") for line in lines)
    assert value('clusterdns_objects{kind="Service"}') == 1


async def test_namespace_label_selector_hides_services_of_other_namespaces(fake_apiserver: FakeApiServer, start):
    fake_apiserver.add(namespace("prod", labels={"env": "production"}))
    fake_apiserver.add(namespace("dev", labels={"env": "dev"}))
    fake_apiserver.add(service("web", namespace="prod", ip="10.96.0.5"))
    fake_apiserver.add(service("web", namespace="dev", ip="10.96.0.6"))
    serving = await start(namespace_labels="env in (production, qa)")
    assert await addresses(serving, "web.prod.svc.cluster.local") == ["10.96.0.5"]
    assert await addresses(serving, "web.dev.svc.cluster.local") == dns.rcode.NXDOMAIN
    # relabelling the namespace brings its services in
    fake_apiserver.modify(namespace("dev", labels={"env": "qa"}))

    async def shown():
        return await addresses(serving, "web.dev.svc.cluster.local") == ["10.96.0.6"]

    await eventually(shown)


async def test_misses_before_the_first_sync_say_not_ready(fake_apiserver: FakeApiServer, start):
    fake_apiserver.forbid("endpointslices")
    serving = await start(startup_timeout=0.2)
    reply = await ask(serving, "nope.default.svc.cluster.local", edns=True)
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert [(int(o.code), o.text) for o in reply.options if o.otype == dns.edns.EDE] == [
        (14, "not synced with the Kubernetes API yet")
    ]


async def test_reasons_never_name_hidden_namespaces_or_their_services(fake_apiserver: FakeApiServer, start):
    fake_apiserver.add(namespace("prod", labels={"env": "production"}))
    fake_apiserver.add(namespace("secret", labels={"env": "dev"}))
    fake_apiserver.add(service("web", namespace="prod", ip="10.96.0.5"))
    fake_apiserver.add(service("vault", namespace="secret", ip="10.96.0.6"))
    serving = await start(namespace_labels="env=production")
    texts = []
    for name in ("vault.prod.svc.cluster.local", "vault.secrets.svc.cluster.local", "web.secret.svc.cluster.local"):
        reply = await ask(serving, name, edns=True)
        assert reply.rcode() == dns.rcode.NXDOMAIN
        texts += [o.text for o in reply.options if o.otype == dns.edns.EDE]
    assert texts == ['no service "vault" in namespace "prod"', 'no namespace "secrets"', 'no namespace "secret"']


def reachable(metrics_body: str) -> str | None:
    return next((line.split()[-1] for line in metrics_body.splitlines()
                 if line.startswith("clusterdns_api_reachable ")), None)


async def test_frozen_api_makes_ready_fail_after_the_grace_and_recovers(fake_apiserver: FakeApiServer, start):
    fake_apiserver.add(service("web", ip="10.96.0.5"))
    serving = await start(ready_grace=1.0, watch=WatchOptions(inactivity_timeout=0.3, probe_timeout=0.5))
    await fake_apiserver.await_for(lambda api: api.open_watches() >= 3)
    fake_apiserver.freeze()  # TCP open, nothing answers: a hung apiserver

    async def not_ready():
        return (await http_get(serving, "/ready"))[0] == 503

    await eventually(not_ready, timeout=10)
    status, body = await http_get(serving, "/ready")
    assert "Kubernetes API unreachable" in body
    assert reachable((await http_get(serving, "/metrics"))[1]) == "0.0"
    assert await addresses(serving, "web.default.svc.cluster.local") == ["10.96.0.5"]  # the last known state

    fake_apiserver.thaw()
    fake_apiserver.modify(service("web", ip="10.96.0.6"))

    async def recovered():
        return (await addresses(serving, "web.default.svc.cluster.local") == ["10.96.0.6"]
                and (await http_get(serving, "/ready"))[0] == 200)

    await eventually(recovered, timeout=10)

    async def reachable_again():  # every watch back, not only the one that carried the change
        return reachable((await http_get(serving, "/metrics"))[1]) == "1.0"

    await eventually(reachable_again)


async def test_quiet_api_keeps_watches_and_readiness(fake_apiserver: FakeApiServer, start):
    fake_apiserver.quiet()
    fake_apiserver.add(service("web", ip="10.96.0.5"))
    serving = await start(ready_grace=0.5, watch=WatchOptions(inactivity_timeout=0.3))
    await fake_apiserver.await_for(lambda api: api.open_watches() >= 3)
    watches = len(fake_apiserver.watches())
    await fake_apiserver.await_for(lambda api: len(api.probes()) >= 6)  # silent for several timeouts
    assert len(fake_apiserver.watches()) == watches  # no watch restarted
    assert dict(serving.kube.restarts) == {}
    assert (await http_get(serving, "/ready"))[0] == 200
    assert reachable((await http_get(serving, "/metrics"))[1]) == "1.0"


async def test_a_change_after_the_api_returns_is_served_within_2s(fake_apiserver: FakeApiServer, start):
    fake_apiserver.add(service("web", ip="10.96.0.5"))
    serving = await start()  # the default backoff: it grows to seconds while the API is away
    await fake_apiserver.await_for(lambda api: api.open_watches() >= 3)
    fake_apiserver.unavailable_for(4.0)
    await fake_apiserver.await_for(lambda api: api.available, timeout=10)
    fake_apiserver.modify(service("web", ip="10.96.0.6"))

    async def changed():
        return await addresses(serving, "web.default.svc.cluster.local") == ["10.96.0.6"]

    await eventually(changed, timeout=2.0)  # backoff reset by the first answer, not slept out
