"""The stock Corefiles of kubeadm, kind, k3s and minikube, each run by a real server.

The Corefiles are written here as each distribution ships them (kubeadm's from
cmd/kubeadm/app/phases/addons/dns/manifests.go, which kind uses unchanged; k3s's
from manifests/coredns.yaml with %{CLUSTER_DOMAIN}% filled in; minikube's with
the hosts block it adds).  Only two things are pointed at local test servers, as
a cluster's would be at its own: ``kubeconfig`` (the fake API server) and the
``forward`` resolv.conf (a temp file naming 127.0.0.1, never this machine's).
The listeners they name (:53, :8080, :8181, :9153) are moved to 127.0.0.1 with
free ports by :func:`clusterdns.config.relocate`, not by editing the text.
Queries and probes go through real sockets.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from clusterdns import config as corefile_config
from clusterdns.serving import Serving
from tests.fake_apiserver import FakeApiServer, endpoint_slice, service
from tests.upstreams import FakeUpstream

KUBEADM = """\
.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
"""

KIND = KUBEADM  # kind runs kubeadm, which writes this Corefile

K3S = """\
.:53 {
    errors
    health {
      lameduck 10s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
    }
    hosts /etc/coredns/NodeHosts {
      ttl 60
      reload 15s
      fallthrough
    }
    prometheus :9153
    cache 30
    loop
    reload
    loadbalance
    import /etc/coredns/custom/*.override
    forward . /etc/resolv.conf
}
import /etc/coredns/custom/*.server
"""

MINIKUBE = """\
.:53 {
    log
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    hosts {
       192.168.49.1 host.minikube.internal
       fallthrough
    }
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
"""

STOCK = {"kubeadm": KUBEADM, "kind": KIND, "k3s": K3S, "minikube": MINIKUBE}
TTL = {"kubeadm": 30, "kind": 30, "k3s": 5, "minikube": 30}
LAMEDUCK = {"kubeadm": 5.0, "kind": 5.0, "k3s": 10.0, "minikube": 5.0}
# What an operator adds: an alias of an outside name onto a Service.
REWRITE = (
    "    rewrite name exact db.example.org. web.default.svc.cluster.local. answer auto\n"
    "    rewrite name suffix .mirror.example.org. .example.com. answer auto\n"  # onto an outside name
)


def localise(text: str, tmp_path: Path, kubeconfig: Path, upstream: str = "127.0.0.1:9") -> str:
    """Point kubeconfig and forward at local test servers, and k3s's paths into tmp_path; nothing else.

    A resolv.conf has no port, and naming 127.0.0.1 in one is refused (the loopback-stub rule), so the
    forward's /etc/resolv.conf becomes the test upstream's address itself.
    """
    text = text.replace("forward . /etc/resolv.conf", f"forward . {upstream}")
    text = text.replace("/etc/coredns/", f"{tmp_path}/coredns/")
    return text.replace("kubernetes cluster.local in-addr.arpa ip6.arpa {",
                        f"kubernetes cluster.local in-addr.arpa ip6.arpa {{\n       kubeconfig {kubeconfig}", 1)


async def ask(serving: Serving, name: str, qtype: str = "A", tcp: bool = False) -> dns.message.Message:
    host, port = serving.dns_server.addresses[0]
    q = dns.message.make_query(name, qtype)
    if tcp:
        return await dns.asyncquery.tcp(q, host, port=port, timeout=2)
    return await dns.asyncquery.udp(q, host, port=port, timeout=2)


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def http_ports(serving: Serving) -> dict[str, int]:
    ports = {}
    for (_, _, paths), server in zip(serving.options.http_listeners, serving.http_servers):
        for path in paths:
            ports[path] = server.port
    return ports


@pytest.fixture
def cluster(fake_apiserver: FakeApiServer) -> FakeApiServer:
    fake_apiserver.add(service("web", ip="10.96.0.5"))
    fake_apiserver.add(endpoint_slice("web-1", "web", addresses=("10.1.0.7",)))
    fake_apiserver.add(service("kube-dns", namespace="kube-system", ip="10.96.0.10"))
    return fake_apiserver


@pytest.mark.parametrize("distribution", sorted(STOCK))
def test_each_stock_corefile_gives_the_settings_coredns_would(distribution, tmp_path, kubeconfig):
    path = tmp_path / "Corefile"
    path.write_text(localise(STOCK[distribution], tmp_path, kubeconfig))
    config = corefile_config.load(path)
    options = config.options
    assert options.listen == [("0.0.0.0", 53), ("::", 53)]  # .:53 is every interface, both families
    assert sorted((h, p, tuple(sorted(paths))) for h, p, paths in options.http_listeners) == [
        ("", 8080, ("/health",)), ("", 8181, ("/ready",)), ("", 9153, ("/metrics",)),
    ]
    assert options.lameduck == LAMEDUCK[distribution]
    assert (options.settings.zone, options.settings.reverse, options.settings.ttl) == ("cluster.local.", True, TTL[distribution])
    assert options.settings.pods == "insecure"
    assert options.kubeconfig == str(kubeconfig)
    assert config.kube_fallthrough == ("in-addr.arpa.", "ip6.arpa.")
    assert [(f.zone, f.upstreams, f.resolv_conf) for f in config.forwards] == [(".", (("127.0.0.1", 9),), None)]
    forward = corefile_config.serve_options(config).forward
    assert (forward.upstreams, forward.max_concurrent, forward.cache_max_ttl, forward.loop_check) == (
        (("127.0.0.1", 9),), 1000 if distribution != "k3s" else 0, 30, True)
    assert config.cache.max_ttl == 30 and config.loop and config.loadbalance and config.reload == (30.0, 15.0)
    assert (config.query_log is not None) == (distribution == "minikube")
    assert corefile_config.serve_options(config).log_queries == ({"all"} if distribution == "minikube" else None)
    assert corefile_config.serve_options(config).loadbalance


@pytest.mark.parametrize("distribution", sorted(STOCK))
async def test_each_stock_corefile_serves_the_cluster_through_real_sockets(
    distribution, cluster, tmp_path, kubeconfig, capsys, request,
):
    upstream = FakeUpstream().start()
    request.addfinalizer(upstream.stop)
    text = localise(STOCK[distribution], tmp_path, kubeconfig, f"127.0.0.1:{upstream.port}")
    if distribution == "k3s":  # k3s: NodeHosts from its ConfigMap, customisations through custom/*.override
        (tmp_path / "coredns" / "custom").mkdir(parents=True)
        (tmp_path / "coredns" / "NodeHosts").write_text("172.18.0.2 k3s-server\n")
        (tmp_path / "coredns" / "custom" / "alias.override").write_text(REWRITE)
        corp = FakeUpstream().start()  # and a stub domain as a whole server block in custom/*.server
        request.addfinalizer(corp.stop)
        (tmp_path / "coredns" / "custom" / "corp.server").write_text(
            f"corp.example:53 {{\n    errors\n    cache 30\n    forward . 127.0.0.1:{corp.port}\n}}\n")
    else:  # elsewhere the operator edits the ConfigMap: the rewrite goes before the closing brace
        text = text.rstrip().removesuffix("}") + REWRITE + "}\n"
    path = tmp_path / "Corefile"
    path.write_text(text)
    options = corefile_config.relocate(corefile_config.serve_options(corefile_config.load(path)), {"*": "127.0.0.1:0"})
    serving = Serving(options)
    await serving.start()
    try:
        reply = await ask(serving, "web.default.svc.cluster.local")
        assert [(rr.to_text()) for rr in reply.answer] == [f"web.default.svc.cluster.local. {TTL[distribution]} IN A 10.96.0.5"]
        reply = await ask(serving, "5.0.96.10.in-addr.arpa", "PTR", tcp=True)
        assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["web.default.svc.cluster.local."]
        assert (await ask(serving, "nope.default.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN
        # a name outside the cluster goes to the forward's upstream (the test one on 127.0.0.1), twice from the cache
        for _ in range(2):
            reply = await ask(serving, "example.com")
            assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["192.0.2.10"]
        assert upstream.count("example.com.", "A") == 1
        # rewritten onto an outside name: asked upstream as rewritten, answered under the name asked
        reply = await ask(serving, "www.mirror.example.org")
        assert [rr.to_text() for rr in reply.answer] == [
            "www.mirror.example.org. 30 IN CNAME example.com.", "example.com. 30 IN A 192.0.2.10"]
        assert reply.question[0].name.to_text() == "www.mirror.example.org."
        assert upstream.count("www.example.com.", "A") == 1 and upstream.count("www.mirror.example.org.") == 0
        # the operator's rewrite: the outside name answers with the Service's address, under its own name
        reply = await ask(serving, "db.example.org")
        assert [rr.to_text() for rr in reply.answer] == [f"db.example.org. {TTL[distribution]} IN A 10.96.0.5"]
        assert reply.question[0].name.to_text() == "db.example.org."
        if distribution == "k3s":  # the stub domain of custom/corp.server went to its own upstream
            reply = await ask(serving, "app.corp.example")
            assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["198.51.100.7"]
            assert corp.count("app.corp.example.", "A") == 1 and upstream.count("app.corp.example.") == 0
        if distribution in ("k3s", "minikube"):  # their hosts entries
            name, address = ("k3s-server", "172.18.0.2") if distribution == "k3s" else ("host.minikube.internal", "192.168.49.1")
            reply = await ask(serving, name)
            assert [rd.to_text() for rrset in reply.answer for rd in rrset] == [address]
        ports = http_ports(serving)
        assert set(ports) == {"/health", "/ready", "/metrics"} and len(set(ports.values())) == 3
        assert await http_get(ports["/health"], "/health") == (200, "OK")
        assert await http_get(ports["/ready"], "/ready") == (200, "OK")
        status, body = await http_get(ports["/metrics"], "/metrics")
        assert status == 200 and "coredns_dns_requests_total" in body
        # minikube's Corefile has log: one line per query on stdout, in CoreDNS's format
        logged = capsys.readouterr().out
        assert ('"A IN web.default.svc.cluster.local. udp ' in logged) == (distribution == "minikube")
        # each port serves its own path only, as CoreDNS's three plugins do
        assert (await http_get(ports["/health"], "/metrics"))[0] == 404
        assert (await http_get(ports["/metrics"], "/ready"))[0] == 404
    finally:
        await serving.close()


@pytest.mark.parametrize("to, allowed", [("127.0.0.1", True), ("192.0.2.1", False)])
async def test_a_corefiles_transfer_plugin_decides_who_may_axfr(to, allowed, cluster, tmp_path, kubeconfig):
    path = tmp_path / "Corefile"
    path.write_text(f".:53 {{\n    kubernetes cluster.local {{\n       kubeconfig {kubeconfig}\n    }}\n"
                    f"    transfer cluster.local {{\n       to {to}\n    }}\n}}\n")
    options = corefile_config.relocate(corefile_config.serve_options(corefile_config.load(path)), {"*": "127.0.0.1:0"})
    serving = Serving(options)
    await serving.start()
    try:
        host, port = serving.dns_server.addresses[0]
        reply = await dns.asyncquery.tcp(dns.message.make_query("cluster.local.", "AXFR"), host, port=port, timeout=5)
    finally:
        await serving.close()
    if allowed:
        assert reply.rcode() == dns.rcode.NOERROR
        assert "web.default.svc.cluster.local." in {rrset.name.to_text() for rrset in reply.answer}
    else:  # loopback is allowed by default; the Corefile's list replaced that
        assert reply.rcode() == dns.rcode.REFUSED and not reply.answer
