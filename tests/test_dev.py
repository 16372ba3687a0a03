"""``clusterdns dev`` end to end: a kubeconfig with two contexts, each pointing at its own in-process
fake API server; the real client watches both; answers checked with dnspython over real sockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from clusterdns.dev.contexts import assign_labels, read_contexts, to_label
from clusterdns.dev.reach import LoopbackAddresses, parse_reach
from clusterdns.dev.serving import DevOptions, DevServing
from clusterdns.dev.status import render
from tests.fake_apiserver import FakeApiServer, namespace, service
from tests.test_cli import ENV

WAIT = 5.0


def write_kubeconfig(path: Path, servers: dict[str, FakeApiServer], current: str, namespaces: dict[str, str]) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": s.url}} for n, s in servers.items()],
        "users": [{"name": n, "user": {}} for n in servers],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n, "namespace": namespaces.get(n, "default")}}
                     for n in servers],
        "current-context": current,
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def node(name: str, internal: str, external: str | None = None) -> dict:
    addresses = [{"type": "InternalIP", "address": internal}, {"type": "Hostname", "address": name}]
    if external:
        addresses.append({"type": "ExternalIP", "address": external})
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {"addresses": addresses}}


def pod(name: str, ns: str, ip: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def slice_for(name: str, svc: str, ns: str, pods: dict[str, str], port: int = 8080) -> dict:
    """An EndpointSlice whose endpoints point at pods (targetRef), named port http."""
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True},
                       "targetRef": {"kind": "Pod", "namespace": ns, "name": p}} for p, ip in pods.items()],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


@pytest.fixture
def clusters():
    """Two fake API servers: 'staging' (the current context, namespace shop) and 'prod'."""
    servers = {"staging": FakeApiServer().start(), "prod": FakeApiServer().start()}
    for s in servers.values():
        for ns in ("default", "shop"):
            s.add(namespace(ns))
    try:
        yield servers
    finally:
        for s in servers.values():
            s.stop()


@pytest.fixture
def dev(clusters, tmp_path: Path, started):
    """Start DevServing against the two clusters; closed after the test."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", clusters, "staging", {"staging": "shop"})

    async def make(**overrides) -> DevServing:
        options = DevOptions(kubeconfig=str(kubeconfig), listen=overrides.pop("listen", ("127.0.0.1", 0)),
                             http=("127.0.0.1", 0),
                             forward=overrides.pop("forward", False), startup_timeout=overrides.pop("startup_timeout", WAIT),
                             state_file=tmp_path / "no-setup.json", resolv_conf=tmp_path / "no-resolv.conf",
                             **overrides)
        return await started(DevServing(options))

    return make


async def ask(serving: DevServing, name: str, qtype: str = "A", edns: bool = False) -> dns.message.Message:
    host, port = serving.dns_server.addresses[0]
    q = dns.message.make_query(name, qtype, use_edns=0 if edns else None)
    return await dns.asyncquery.udp(q, host, port=port, timeout=2)


async def answers(serving: DevServing, name: str, qtype: str = "A") -> list[str] | int:
    reply = await ask(serving, name, qtype)
    data = sorted(rd.to_text() for rrset in reply.answer for rd in rrset if rrset.rdtype == dns.rdatatype.from_text(qtype))
    return data if data else reply.rcode()


async def eventually(check, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


def ede_text(reply: dns.message.Message) -> str:
    return " ".join(o.text or "" for o in reply.options if o.otype == dns.edns.EDE)


# --------------------------------------------------------------------------- contexts


def test_context_names_become_labels_and_collisions_are_reported():
    assert to_label("arn:aws:eks:eu-west-1:1234:cluster/Prod") == "prod"
    assert to_label("gke_my-proj_europe-west1_dev") == "gke-my-proj-europe-west1-dev"
    assert to_label("kind-dev") == "kind-dev"
    assert to_label("___").startswith("ctx-")
    assert len(to_label("x" * 100)) == 63
    labels, reports = assign_labels(["a_b", "a.b", "a-b"])
    assert labels == {"a_b": "a-b", "a.b": "a-b-2", "a-b": "a-b-3"}
    assert len(reports) == 2 and '"a_b" and "a.b" both make the DNS label "a-b"' in reports[0]


def test_read_contexts_current_default_namespace_and_unknown(tmp_path: Path, clusters):
    path = write_kubeconfig(tmp_path / "k", clusters, "prod", {"staging": "shop"})
    contexts, _ = read_contexts(str(path))
    assert [(c.name, c.label, c.namespace, c.current) for c in contexts] == [
        ("staging", "staging", "shop", False), ("prod", "prod", "default", True)]
    only, _ = read_contexts(str(path), "staging")
    assert [c.name for c in only] == ["staging"] and only[0].current  # the first served takes cluster.local
    with pytest.raises(Exception, match="no context nope"):
        read_contexts(str(path), "staging,nope")


def test_reach_flags_and_stable_loopback_addresses():
    assert parse_reach(["forward", "prod=external"], ["prod", "staging"]) == ("forward", {"prod": "external"})
    with pytest.raises(ValueError, match="expected clusterip"):
        parse_reach(["tunnel"], ["prod"])
    with pytest.raises(ValueError, match="no context 'qa'"):
        parse_reach(["qa=forward"], ["prod"])
    first, second = LoopbackAddresses(), LoopbackAddresses()
    a = first.address(("prod", "shop", "api"))
    assert a == second.address(("prod", "shop", "api"))  # stable across runs
    octets = [int(x) for x in a.split(".")]
    assert octets[0] == 127 and octets[1] != 0 and 0 < octets[3] < 255
    assert first.address(("prod", "shop", "db")) != a


# --------------------------------------------------------------------------- zones and short forms


async def test_each_context_answers_under_its_zone_and_the_current_one_under_cluster_local(clusters, dev):
    clusters["staging"].add(service("api", namespace="shop", ip="10.96.1.1"))
    clusters["prod"].add(service("api", namespace="shop", ip="10.200.1.1"))
    serving = await dev(reach=["clusterip"])
    assert await answers(serving, "api.shop.svc.staging.k8s") == ["10.96.1.1"]
    assert await answers(serving, "api.shop.svc.prod.k8s") == ["10.200.1.1"]
    assert await answers(serving, "api.shop.svc.cluster.local") == ["10.96.1.1"]
    reply = await ask(serving, "api.shop.svc.prod.k8s")
    assert reply.answer[0].ttl == 5  # short: operating systems cache
    assert await answers(serving, "nope.shop.svc.prod.k8s") == dns.rcode.NXDOMAIN
    assert await answers(serving, "api.shop.svc.qa.k8s") == dns.rcode.NXDOMAIN  # no such context: never forwarded
    reply = await ask(serving, "api.shop.svc.qa.k8s", edns=True)
    assert "no kubeconfig context answers under this name; served: staging.k8s, prod.k8s" in ede_text(reply)
    assert await answers(serving, "1.1.96.10.in-addr.arpa", "PTR") == ["api.shop.svc.cluster.local."]
    assert await answers(serving, "example.com") == dns.rcode.REFUSED  # --no-forward


async def test_short_forms_answer_for_the_current_context_only_when_the_service_exists(clusters, dev):
    clusters["staging"].add(service("api", namespace="shop", ip="10.96.1.1"))
    clusters["staging"].add(service("db", namespace="default", ip="10.96.2.2"))
    serving = await dev(reach=["clusterip"])
    reply = await ask(serving, "Api.Shop")
    assert reply.rcode() == dns.rcode.NOERROR
    assert [(r.name.to_text(), [rd.to_text() for rd in r]) for r in reply.answer] == [("Api.Shop.", ["10.96.1.1"])]
    assert await answers(serving, "api") == ["10.96.1.1"]  # svc alone: the context's namespace (shop)
    assert await answers(serving, "db.default") == ["10.96.2.2"]
    assert await answers(serving, "db") == dns.rcode.REFUSED  # not in shop: an outside name
    assert await answers(serving, "github.com") == dns.rcode.REFUSED  # not service github of namespace com


async def test_one_context_down_leaves_the_other_answering_and_its_misses_servfail(clusters, dev):
    clusters["staging"].add(service("api", namespace="shop", ip="10.96.1.1"))
    clusters["prod"].add(service("api", namespace="shop", ip="10.200.1.1"))
    serving = await dev(reach=["clusterip"])
    clusters["prod"].bookmark_interval = 0.2  # a watch that is back says so soon
    clusters["prod"].unavailable_for(60)  # the checks below run during the outage; not ended here

    async def prod_down():
        return await answers(serving, "nope.shop.svc.prod.k8s") == dns.rcode.SERVFAIL

    await eventually(prod_down)
    assert await answers(serving, "api.shop.svc.prod.k8s") == ["10.200.1.1"]  # the last known state still answers
    assert await answers(serving, "nope.shop.svc.staging.k8s") == dns.rcode.NXDOMAIN  # the other is unaffected
    assert await answers(serving, "api.shop.svc.cluster.local") == ["10.96.1.1"]
    reply = await ask(serving, "nope.shop.svc.prod.k8s", edns=True)
    assert reply.rcode() == dns.rcode.SERVFAIL and ede_text(reply)
    status = serving.status()
    prod = next(c for c in status["contexts"] if c["name"] == "prod")
    assert prod["api_reachable"] is False and prod["synced"] is True
    assert "API unreachable" in render(status)
    assert 'the API server of context "prod" is unreachable' in ede_text(reply)

    clusters["prod"].come_back()

    async def prod_back():  # the API is back: misses are denied again
        return await answers(serving, "nope.shop.svc.prod.k8s") == dns.rcode.NXDOMAIN

    await eventually(prod_back, timeout=20)


async def test_a_context_whose_api_never_answers_servfails_and_the_other_serves(clusters, dev):
    clusters["staging"].add(service("api", namespace="shop", ip="10.96.1.1"))
    clusters["prod"].forbid("services")
    serving = await dev(reach=["clusterip"], startup_timeout=0.5)
    assert await answers(serving, "api.shop.svc.staging.k8s") == ["10.96.1.1"]
    assert await answers(serving, "api.shop.svc.prod.k8s") == dns.rcode.SERVFAIL  # unsynced: never NXDOMAIN
    assert serving.readiness() == (False, "not answering for: prod")


# --------------------------------------------------------------------------- external


async def test_external_answers_from_load_balancer_external_ips_and_node_ports(clusters, dev):
    api = clusters["staging"]
    api.add(node("node-b", "192.0.2.12", external="203.0.113.12"))
    api.add(node("node-a", "192.0.2.11"))
    lb = service("lb", namespace="shop", ip="10.96.3.1", type="LoadBalancer")
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}
    api.add(lb)
    named = service("named", namespace="shop", ip="10.96.3.2", type="LoadBalancer")
    named["status"] = {"loadBalancer": {"ingress": [{"hostname": "abc.elb.example.com"}]}}
    api.add(named)
    api.add(service("ext", namespace="shop", ip="10.96.3.3", externalIPs=["198.51.100.9"]))
    np = service("np", namespace="shop", ip="10.96.3.4", type="NodePort")
    np["spec"]["ports"][0]["nodePort"] = 30080
    api.add(np)
    api.add(service("inner", namespace="shop", ip="10.96.3.5"))
    serving = await dev(reach=["external"])
    assert await answers(serving, "lb.shop.svc.cluster.local") == ["198.51.100.7"]
    assert await answers(serving, "named.shop.svc.cluster.local", "CNAME") == ["abc.elb.example.com."]
    assert await answers(serving, "ext.shop.svc.cluster.local") == ["198.51.100.9"]
    assert await answers(serving, "np.shop.svc.cluster.local") == ["192.0.2.11", "203.0.113.12"]  # ExternalIP first
    assert await answers(serving, "np.shop.svc.cluster.local", "SRV") == ["0 100 30080 np.shop.svc.cluster.local."]
    reply = await ask(serving, "inner.shop.svc.cluster.local", edns=True)
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer  # NODATA, and why:
    assert "inner.shop has no external address" in ede_text(reply)
    # A node's address changing reaches the NodePort answer.
    api.modify(node("node-a", "192.0.2.99"))

    async def moved():
        return await answers(serving, "np.shop.svc.cluster.local") == ["192.0.2.99", "203.0.113.12"]

    await eventually(moved)
    # The annotation wins over the flag; status says how each answers.
    api.modify(service("inner", namespace="shop", ip="10.96.3.5", annotations={"clusterdns.io/reach": "clusterip"}))

    async def annotated():
        return await answers(serving, "inner.shop.svc.cluster.local") == ["10.96.3.5"]

    await eventually(annotated)
    services = {s["name"]: s for s in serving.status()["contexts"][0]["services"]}
    assert services["np"]["via"] == "NodePort" and services["np"]["node_ports"] == [[80, 30080]]
    assert services["named"]["cname"] == "abc.elb.example.com."
    assert services["inner"]["reach"] == "clusterip"


async def test_auto_is_external_where_it_exists_else_forward_and_per_context(clusters, dev):
    lb = service("lb", namespace="shop", ip="10.96.3.1", type="LoadBalancer")
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}
    clusters["staging"].add(lb)
    clusters["staging"].add(node("node-a", "192.0.2.11"))
    np = service("np", namespace="shop", ip="10.96.3.4", type="NodePort", port=free_port())
    np["spec"]["ports"][0]["nodePort"] = 30080
    clusters["staging"].add(np)
    clusters["staging"].add(service("inner", namespace="shop", ip="10.96.3.5", port=28081))
    clusters["prod"].add(service("inner", namespace="shop", ip="10.200.3.5"))
    serving = await dev(reach=["prod=clusterip"])
    assert await answers(serving, "lb.shop.svc.cluster.local") == ["198.51.100.7"]
    [loopback] = await answers(serving, "inner.shop.svc.cluster.local")
    assert loopback.startswith("127.") and not loopback.startswith("127.0.")
    assert await answers(serving, "inner.shop.svc.prod.k8s") == ["10.200.3.5"]
    assert await answers(serving, "np.shop.svc.cluster.local") == ["192.0.2.11"]

    async def inner_listening():
        return ("staging", "shop", "inner", "") in serving.forwards.services

    await eventually(inner_listening)
    assert ("staging", "shop", "np", "") not in serving.forwards.services


# --------------------------------------------------------------------------- status over HTTP


async def test_status_endpoint_serves_the_document_dev_status_prints(clusters, dev):
    clusters["staging"].add(service("api", namespace="shop", ip="10.96.1.1"))
    serving = await dev(reach=["clusterip"])
    reader, writer = await asyncio.open_connection("127.0.0.1", serving.http.port)
    writer.write(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = await asyncio.wait_for(reader.read(), WAIT)
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200") and "application/json" in head
    status = json.loads(body)
    staging = status["contexts"][0]
    assert staging["name"] == "staging" and staging["current"] and staging["synced"]
    assert staging["zones"] == ["cluster.local.", "staging.k8s."]
    assert staging["services"] == [{"namespace": "shop", "name": "api", "reach": "clusterip", "via": "cluster IP",
                                    "addresses": ["10.96.1.1"], "cname": "", "node_ports": [], "note": "",
                                    "address": "10.96.1.1"}]
    text = render(status)
    assert "context staging (current): synced; zones cluster.local, staging.k8s; 1 service" in text


# --------------------------------------------------------------------------- forward


async def echo_server(prefix: bytes):
    """A TCP server that answers each line with ``prefix`` + the line (it plays a pod's port)."""

    async def handle(reader, writer):
        try:
            while line := await reader.readline():
                writer.write(prefix + line)
                await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def talk(address: str, port: int, line: bytes) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), WAIT)
    try:
        writer.write(line)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), WAIT)
    finally:
        writer.close()


async def test_forward_relays_through_the_port_forward_subresource_and_follows_endpoints(clusters, dev):
    api = clusters["staging"]
    echo_a, echo_b = await echo_server(b"A:"), await echo_server(b"B:")
    try:
        port = free_port()
        api.add(pod("web-a", "shop", "10.1.0.1"))
        api.add(pod("web-b", "shop", "10.1.0.2"))
        api.add(service("web", namespace="shop", ip="10.96.5.1", port=port))
        api.add(slice_for("web-1", "web", "shop", {"web-a": "10.1.0.1"}))
        api.port_forward_to("shop", "web-a", 8080, echo_a.sockets[0].getsockname())
        api.port_forward_to("shop", "web-b", 8080, echo_b.sockets[0].getsockname())
        serving = await dev(reach=["forward"])
        [address] = await answers(serving, "web.shop.svc.cluster.local")
        assert address.startswith("127.")
        assert await answers(serving, "web.shop.svc.staging.k8s") == [address]  # one address per Service
        assert api.port_forwards == []  # nothing opened towards the cluster before first use

        async def listening():
            return bool(serving.forwards.services.get(("staging", "shop", "web", ""), None)
                        and serving.forwards.services[("staging", "shop", "web", "")].ports)

        await eventually(listening)
        assert await talk(address, port, b"hello\n") == b"A:hello\n"
        assert await talk(address, port, b"again\n") == b"A:again\n"
        # The pod is replaced: the next connection goes to the new one.
        api.modify(slice_for("web-1", "web", "shop", {"web-b": "10.1.0.2"}))

        async def moved():
            return await talk(address, port, b"hi\n") == b"B:hi\n"

        await eventually(moved)
        assert api.port_forwards[:2] == [("shop", "web-a"), ("shop", "web-a")] and api.port_forwards[-1] == ("shop", "web-b")
        forwarded = next(s for s in serving.status()["contexts"][0]["services"] if s["name"] == "web")["forward"]
        assert forwarded["ports"] == [port] and forwarded["connections"] >= 3
        # No ready endpoint: the connection is closed, and status says why.
        api.modify(slice_for("web-1", "web", "shop", {}))

        async def refused():  # closed (or reset) without a byte of answer
            reader, writer = await asyncio.open_connection(address, port)
            writer.write(b"x\n")
            try:  # the old pod may still answer until the watch brings the change: then try again
                data = await asyncio.wait_for(reader.read(100), WAIT)
            except ConnectionResetError:
                data = b""
            writer.close()
            return data == b""

        await eventually(refused)
        forwarded = next(s for s in serving.status()["contexts"][0]["services"] if s["name"] == "web")["forward"]
        assert "no ready endpoint with a pod serves service shop/web" in forwarded["last_error"]
        # The Service goes away: so does its listener.
        api.delete("Service", "shop", "web")

        async def closed():
            return ("staging", "shop", "web", "") not in serving.forwards.services

        await eventually(closed)
    finally:
        for server in (echo_a, echo_b):
            server.close()
            await server.wait_closed()


async def test_pod_names_in_dev(clusters, dev):
    clusters["staging"].add(pod("spark-driver", "shop", "10.1.0.9"))
    serving = await dev(reach=["clusterip"], pod_names=True)
    assert await answers(serving, "spark-driver.shop.pod.cluster.local") == ["10.1.0.9"]
    assert await answers(serving, "spark-driver.shop.pod.staging.k8s") == ["10.1.0.9"]
    assert await answers(serving, "9.0.1.10.in-addr.arpa", "PTR") == ["spark-driver.shop.pod.cluster.local."]


# --------------------------------------------------------------------------- the command


def test_dev_command_serves_reports_status_and_stops_on_sigterm(clusters, tmp_path: Path):
    clusters["staging"].add(service("api", namespace="shop", ip="10.96.1.1"))
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", clusters, "staging", {"staging": "shop"})
    dns_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clusterdns.cli", "dev", "--kubeconfig", str(kubeconfig), "--no-forward",
         "--reach", "clusterip", "--listen", f"127.0.0.1:{dns_port}", "--http", f"127.0.0.1:{http_port}"],
        stderr=subprocess.PIPE, text=True, env=ENV,
    )
    try:
        for line in proc.stderr:
            if "answering on" in line:
                break
        else:
            raise AssertionError("clusterdns dev did not start")
        reply = dns.query.udp(dns.message.make_query("api.shop.svc.cluster.local", "A"), "127.0.0.1", port=dns_port,
                              timeout=3)
        assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["10.96.1.1"]
        reply = dns.query.udp(dns.message.make_query("nope.shop.svc.prod.k8s", "A"), "127.0.0.1", port=dns_port,
                              timeout=3)
        assert reply.rcode() == dns.rcode.NXDOMAIN
        status = subprocess.run([sys.executable, "-m", "clusterdns.cli", "dev", "status", "--status-url",
                                 f"http://127.0.0.1:{http_port}/status"], capture_output=True, text=True, env=ENV,
                                timeout=30)
        assert status.returncode == 0, status.stderr
        assert "context staging (current): synced" in status.stdout and "api.shop" in status.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    gone = subprocess.run([sys.executable, "-m", "clusterdns.cli", "dev", "status", "--status-url",
                           f"http://127.0.0.1:{http_port}/status"], capture_output=True, text=True, env=ENV, timeout=30)
    assert gone.returncode == 1 and "no clusterdns dev answers" in gone.stderr
    refused = subprocess.run([sys.executable, "-m", "clusterdns.cli", "dev", "--listen", "127.0.0.1:5353"],
                             capture_output=True, text=True, env=ENV, timeout=30)
    assert refused.returncode == 2 and "5353 is mDNS" in refused.stderr


# --------------------------------------------------------------------------- everything else: forwarded


async def test_other_names_are_forwarded_to_the_upstream_the_setup_record_names(clusters, dev, tmp_path: Path):
    from tests.upstreams import FakeUpstream

    storefront = service("storefront", namespace="shop", ip="10.96.3.2", type="LoadBalancer")
    storefront["status"] = {"loadBalancer": {"ingress": [{"hostname": "www.example.com"}]}}
    clusters["staging"].add(storefront)
    clusters["staging"].add(service("api", namespace="shop", ip="10.96.1.1"))
    upstream = FakeUpstream().start()
    try:
        (tmp_path / "no-setup.json").write_text(json.dumps({"upstreams": [upstream.address]}))  # as setup records
        serving = await dev(forward=True)
        assert serving.upstreams == [upstream.address] and "setup record" in serving.upstreams_from
        assert await answers(serving, "example.com") == ["192.0.2.10"]
        [address] = await answers(serving, "api.shop")  # a short form: answered here (a forward address)
        assert address == (await answers(serving, "api.shop.svc.cluster.local"))[0]
        assert upstream.count("api.shop.") == 0
        # The LoadBalancer's hostname is a CNAME; its address comes from upstream in the same answer.
        reply = await ask(serving, "storefront.shop.svc.cluster.local")
        assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["www.example.com.", "example.com.",
                                                                             "192.0.2.10"]
        assert await answers(serving, "nope.shop.svc.cluster.local") == dns.rcode.NXDOMAIN  # never upstream
        for name in ("nope.shop.svc.cluster.local", "api.shop.svc.cluster.local"):  # RA: this server recurses
            assert (await ask(serving, name)).flags & dns.flags.RA, name
        assert upstream.count("nope.shop.svc.cluster.local.") == 0
    finally:
        upstream.stop()


async def test_an_upstream_that_forwards_back_to_us_is_refused(clusters, dev):
    from clusterdns.dev.serving import ForwardingLoop
    from tests.upstreams import FakeUpstream

    port = free_port()
    looping = FakeUpstream(relay_to=("127.0.0.1", port)).start()  # a resolver that sends everything back to us
    try:
        with pytest.raises(ForwardingLoop, match=f"upstream {looping.address}.*sent our probe query"):
            await dev(forward=True, upstreams=[looping.address], listen=("127.0.0.1", port))
    finally:
        looping.stop()


async def test_macos_setup_asks_the_running_server_for_its_forward_addresses(clusters, dev):
    from clusterdns.dev.cli import _running_forward_addresses

    clusters["staging"].add(service("web", namespace="shop", ip="10.96.5.1", port=free_port()))
    serving = await dev(reach=["forward"])
    [address] = await answers(serving, "web.shop.svc.cluster.local")
    url = f"http://127.0.0.1:{serving.http.port}/status"
    assert await asyncio.to_thread(_running_forward_addresses, url) == [address]  # the lo0 alias macOS needs
    assert await asyncio.to_thread(_running_forward_addresses, "http://127.0.0.1:1/status") == []  # none running


async def test_tcp_answers_and_malformed_packets_get_formerr_or_nothing(clusters, dev):
    clusters["staging"].add(service("api", namespace="shop", ip="10.96.1.1"))
    serving = await dev(reach=["clusterip"])
    host, port = serving.dns_server.addresses[0]
    reply = await dns.asyncquery.tcp(dns.message.make_query("api.shop.svc.prod.k8s", "A"), host, port=port, timeout=2)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    reply = await dns.asyncquery.tcp(dns.message.make_query("Api.Shop", "A"), host, port=port, timeout=2)
    assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["10.96.1.1"]
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        garbage = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fabc"  # a label longer than the packet
        await loop.sock_sendall(sock, garbage)
        data = await asyncio.wait_for(loop.sock_recv(sock, 512), WAIT)
    assert data[:2] == b"\x12\x34" and data[3] & 0x0F == dns.rcode.FORMERR
    assert await answers(serving, "api.shop.svc.cluster.local") == ["10.96.1.1"]  # still serving


async def test_forward_gives_each_statefulset_pod_its_own_address(clusters, dev):
    api = clusters["staging"]
    echo_0, echo_1 = await echo_server(b"0:"), await echo_server(b"1:")
    try:
        port = free_port()
        api.add(service("db", namespace="shop", ip="None", port=port))  # headless
        for n, ip in (("0", "10.1.0.10"), ("1", "10.1.0.11")):
            api.add(pod(f"db-{n}", "shop", ip))
        members = {"db-0": "10.1.0.10", "db-1": "10.1.0.11"}
        db_slice = slice_for("db-1", "db", "shop", members)
        for endpoint in db_slice["endpoints"]:
            endpoint["hostname"] = endpoint["targetRef"]["name"]
        api.add(db_slice)
        api.port_forward_to("shop", "db-0", 8080, echo_0.sockets[0].getsockname())
        api.port_forward_to("shop", "db-1", 8080, echo_1.sockets[0].getsockname())
        serving = await dev(reach=["forward"])
        [first] = await answers(serving, "db-0.db.shop.svc.cluster.local")
        [second] = await answers(serving, "db-1.db.shop.svc.cluster.local")
        [either] = await answers(serving, "db.shop.svc.cluster.local")
        assert len({first, second, either}) == 3 and all(a.startswith("127.") for a in (first, second, either))

        async def listening():
            return all(serving.forwards.services.get(("staging", "shop", "db", label)) is not None
                       and serving.forwards.services[("staging", "shop", "db", label)].ports
                       for label in ("", "db-0", "db-1"))

        await eventually(listening)
        assert await talk(first, port, b"a\n") == b"0:a\n"  # always that pod
        assert await talk(second, port, b"b\n") == b"1:b\n"
        assert await talk(either, port, b"c\n") in (b"0:c\n", b"1:c\n")
        pods = next(s for s in serving.status()["contexts"][0]["services"] if s["name"] == "db")["pods"]
        assert {p["name"]: p["address"] for p in pods} == {"db-0": first, "db-1": second}
        # db-1 leaves: its name and its listener go, and its address is released.
        db_slice["endpoints"] = db_slice["endpoints"][:1]
        api.modify(db_slice)

        async def gone():
            return (await answers(serving, "db-1.db.shop.svc.cluster.local") == dns.rcode.NXDOMAIN
                    and ("staging", "shop", "db", "db-1") not in serving.forwards.services)

        await eventually(gone)
        assert await talk(first, port, b"d\n") == b"0:d\n"
    finally:
        for server in (echo_0, echo_1):
            server.close()
            await server.wait_closed()


async def test_a_node_port_service_waits_for_the_nodes_before_it_is_forwarded(clusters, dev, caplog):
    api = clusters["staging"]
    api.add(node("node-a", "192.0.2.11"))
    np = service("np", namespace="shop", ip="10.96.3.4", type="NodePort", port=free_port())
    np["spec"]["ports"][0]["nodePort"] = 30080
    api.add(np)
    api.forbid("nodes")  # the nodes come late (here: after a 403 and a retry)
    caplog.set_level(logging.INFO, logger="clusterdns.dev.forward")
    serving = await dev()
    api.clear_faults()

    async def external():
        return await answers(serving, "np.shop.svc.cluster.local") == ["192.0.2.11"]

    await eventually(external, timeout=10)
    assert ("staging", "shop", "np", "") not in serving.forwards.services
    assert not any("shop/np" in r.getMessage() for r in caplog.records if r.name == "clusterdns.dev.forward")


async def test_a_zone_transfer_query_is_answered_as_any_other_and_the_connection_kept(clusters, dev):
    """dev serves several zones and transfers none: an AXFR is REFUSED with the reason, never a dropped connection."""
    clusters["staging"].add(service("api", namespace="shop", ip="10.96.1.1"))
    serving = await dev(reach=["clusterip"])
    host, port = serving.dns_server.addresses[0]
    reply = await dns.asyncquery.tcp(dns.message.make_query("cluster.local", "AXFR", use_edns=0), host, port=port,
                                     timeout=2)
    assert reply.rcode() == dns.rcode.REFUSED and not reply.answer  # nothing transferred
    assert ede_text(reply) == "this server offers no zone transfers"
    assert await answers(serving, "api.shop.svc.cluster.local") == ["10.96.1.1"]  # still serving
