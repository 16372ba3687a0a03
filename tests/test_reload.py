"""Reloading a Corefile (clusterdns/reload.py): applied while queries flow, refused when broken, new watch on a new filter."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from clusterdns import config as corefile_config
from clusterdns.reload import CorefileReloader
from clusterdns.serving import Serving
from tests.fake_apiserver import FakeApiServer, endpoint_slice, namespace, service, write_kubeconfig

COREFILE = """\
.:53 {{
    errors
    health
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
{options}
    }}
{extra}
}}
"""


def prepare(config):
    return corefile_config.relocate(corefile_config.serve_options(config), {"*": "127.0.0.1:0"})


async def ask(serving: Serving, name: str, qtype: str = "A") -> dns.message.Message:
    host, port = serving.dns_server.addresses[0]
    return await dns.asyncquery.udp(dns.message.make_query(name, qtype), host, port=port, timeout=2)


@pytest.fixture
async def running(fake_apiserver: FakeApiServer, kubeconfig: Path, tmp_path: Path):
    fake_apiserver.add(namespace("shop"))
    fake_apiserver.add(service("web", ip="10.96.0.5"))
    fake_apiserver.add(endpoint_slice("web-1", "web", addresses=("10.1.0.7",)))
    fake_apiserver.add(service("cart", namespace="shop", ip="10.96.0.6"))
    path = tmp_path / "Corefile"

    def write(options: str = "", extra: str = "") -> None:
        path.write_text(COREFILE.format(kubeconfig=kubeconfig, options=options, extra=extra))

    write("        namespaces default\n        ttl 30")
    config = corefile_config.load(path)
    serving = Serving(prepare(config))
    reloader = CorefileReloader(serving, config, prepare)
    try:
        await serving.start()
        yield reloader, write
    finally:
        await reloader.serving.close()


class Prober:
    """Asks one name over and over during a reload; every answer must be the expected one."""

    def __init__(self, reloader: CorefileReloader, name: str, address: str):
        self.reloader, self.name, self.address = reloader, name, address
        self.answers: list[tuple[int, list[str]]] = []
        self._stop = asyncio.Event()

    async def run(self):
        while not self._stop.is_set():
            reply = await ask(self.reloader.serving, self.name)
            self.answers.append((reply.rcode(), tuple(rd.to_text() for rrset in reply.answer for rd in rrset)))
            await asyncio.sleep(0)

    async def __aenter__(self):
        self.task = asyncio.create_task(self.run())
        while not self.answers:  # at least one answer before the change
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc):
        count = len(self.answers)
        while len(self.answers) < count + 1:  # and at least one after it
            await asyncio.sleep(0.01)
        self._stop.set()
        await self.task
        assert set(self.answers) == {(dns.rcode.NOERROR, (self.address,))}, "a query met a gap during the reload"


async def test_a_change_is_applied_on_the_same_listeners_while_queries_flow(running):
    reloader, write = running
    before = reloader.serving
    address = before.dns_server.addresses[0]
    assert await reloader.check() is False  # unchanged: nothing to do
    write("        namespaces default\n        ttl 7",
          "    rewrite name exact db.example.org. web.default.svc.cluster.local. answer auto")
    async with Prober(reloader, "web.default.svc.cluster.local", "10.96.0.5"):
        assert await reloader.check() is True
    serving = reloader.serving
    assert serving is not before and serving.dns_server.addresses == [address]
    reply = await ask(serving, "web.default.svc.cluster.local")
    assert reply.answer[0].ttl == 7
    reply = await ask(serving, "db.example.org")
    assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["10.96.0.5"]
    assert reloader.reloads == 1


async def test_a_corefile_with_errors_is_refused_and_the_running_one_keeps_answering(running, caplog):
    reloader, write = running
    before = reloader.serving
    write("        namespaces default\n        ttl 30", "    dnssec")
    async with Prober(reloader, "web.default.svc.cluster.local", "10.96.0.5"):
        assert await reloader.check() is False
    assert reloader.serving is before and reloader.failures == 1
    assert 'plugin "dnssec" is not supported by clusterdns' in caplog.text
    assert "keeping the running configuration" in caplog.text
    assert await reloader.check() is False and reloader.failures == 1  # the same bad version is reported once


async def test_a_new_filter_starts_a_new_watch_with_no_nxdomain_window(running, fake_apiserver: FakeApiServer):
    reloader, write = running
    assert (await ask(reloader.serving, "cart.shop.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN  # filtered out
    watches = len(fake_apiserver.lists("services"))
    write("        namespaces default shop\n        ttl 30")
    async with Prober(reloader, "web.default.svc.cluster.local", "10.96.0.5"):
        assert await reloader.check() is True
    assert len(fake_apiserver.lists("services")) > watches  # the new watch listed again
    reply = await ask(reloader.serving, "cart.shop.svc.cluster.local")
    assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["10.96.0.6"]


async def test_http_listeners_that_stay_are_kept_and_others_move(running):
    reloader, write = running
    before = reloader.serving
    kept = {key[2]: server.port for key, server in before._http_listeners.items()}
    write("        namespaces default\n        ttl 30", "    prometheus 127.0.0.2:0")
    assert await reloader.check() is True
    after = {key[2]: server.port for key, server in reloader.serving._http_listeners.items()}
    assert after[frozenset({"/health"})] == kept[frozenset({"/health"})]
    assert after[frozenset({"/ready"})] == kept[frozenset({"/ready"})]
    assert frozenset({"/metrics"}) in after


async def test_force_checks_at_once_without_a_reload_plugin(running):
    reloader, write = running
    assert reloader.config.reload is None  # no reload plugin: no polling, SIGUSR1 only
    stop = asyncio.Event()
    task = asyncio.create_task(reloader.run(stop))
    write("        namespaces default\n        ttl 9")
    reloader.force()
    for _ in range(500):
        if reloader.reloads:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert reloader.reloads == 1
    assert (await ask(reloader.serving, "web.default.svc.cluster.local")).answer[0].ttl == 9


async def test_a_new_kubeconfig_watches_the_other_cluster_with_no_gap(running, tmp_path: Path):
    reloader, write = running
    other = FakeApiServer().start()
    try:
        other.add(service("web", ip="10.96.0.99"))
        other_config = write_kubeconfig(tmp_path / "other-kubeconfig", other.url)
        path = tmp_path / "Corefile"
        path.write_text(path.read_text().replace(str(tmp_path / "kubeconfig"), str(other_config)))
        answers = []
        stop = asyncio.Event()

        async def probe():
            while not stop.is_set():
                reply = await ask(reloader.serving, "web.default.svc.cluster.local")
                answers.append((reply.rcode(), tuple(rd.to_text() for rrset in reply.answer for rd in rrset)))
                await asyncio.sleep(0)

        task = asyncio.create_task(probe())
        while not answers:  # the old cluster answered once before the reload starts
            await asyncio.sleep(0.01)
        assert await reloader.check() is True
        while not answers or answers[-1][1] != ("10.96.0.99",):
            await asyncio.sleep(0.01)
        stop.set()
        await task
        # one cluster's answer, then the other's: never a miss in between
        assert set(answers) <= {(dns.rcode.NOERROR, ("10.96.0.5",)), (dns.rcode.NOERROR, ("10.96.0.99",))}
        assert answers[0][1] == ("10.96.0.5",)
    finally:
        await reloader.serving.close()  # its watch threads talk to `other`: stop them before it
        other.stop()
