"""``--pod-names``: POD-NAME.NS.pod.ZONE for every running pod, and a PTR from its IP to that name."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import dns.rcode

from clusterdns.settings import Settings

from .dnsserver import RunningServer, answers

MANIFEST = """
apiVersion: v1
kind: Pod
metadata: {name: spark-driver-7f9c, namespace: jobs}
status: {phase: Running, podIP: 10.244.1.7, podIPs: [{ip: 10.244.1.7}, {ip: "fd00::7"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: finished, namespace: jobs}
status: {phase: Succeeded, podIP: 10.244.1.8}
---
apiVersion: v1
kind: Pod
metadata: {name: pending, namespace: jobs}
status: {phase: Pending}
---
apiVersion: v1
kind: Namespace
metadata: {name: jobs}
"""


def _manifests(tmp_path: Path) -> Path:
    (tmp_path / "pods.yaml").write_text(MANIFEST)
    return tmp_path


def test_running_pods_have_names_forward_and_reverse(tmp_path: Path):
    with RunningServer([_manifests(tmp_path)], settings=Settings(pod_names=True)) as server:
        name = "spark-driver-7f9c.jobs.pod.cluster.local"
        assert answers(server.query(name, "A")) == ["10.244.1.7"]
        assert answers(server.query(name, "AAAA")) == ["fd00::7"]
        assert answers(server.query("7.1.244.10.in-addr.arpa", "PTR")) == [name + "."]
        v6_reverse = ipaddress.ip_address("fd00::7").reverse_pointer
        assert answers(server.query(v6_reverse, "PTR")) == [name + "."]
        assert server.query("finished.jobs.pod.cluster.local").rcode() == dns.rcode.NXDOMAIN  # not running
        assert server.query("pending.jobs.pod.cluster.local").rcode() == dns.rcode.NXDOMAIN
        assert answers(server.query("10-244-1-7.jobs.pod.cluster.local")) == ["10.244.1.7"]  # the dashed form stays


def test_pod_names_are_off_by_default(tmp_path: Path):
    with RunningServer([_manifests(tmp_path)]) as server:
        assert server.query("spark-driver-7f9c.jobs.pod.cluster.local").rcode() == dns.rcode.NXDOMAIN
        assert server.query("7.1.244.10.in-addr.arpa", "PTR").rcode() == dns.rcode.NXDOMAIN


async def test_serve_with_pod_names_watches_pods_of_a_live_cluster(fake_apiserver, kubeconfig):
    import dns.asyncquery
    import dns.message

    from clusterdns.serving import ServeOptions, Serving
    from tests.fake_apiserver import namespace, pod

    fake_apiserver.add(namespace("jobs"))
    fake_apiserver.add(pod("spark-driver", namespace="jobs", ip="10.244.3.3"))
    serving = Serving(ServeOptions(settings=Settings(pod_names=True), listen=[("127.0.0.1", 0)], http=None,
                                   kubeconfig=str(kubeconfig), startup_timeout=5))
    await serving.start()
    try:
        host, port = serving.dns_server.addresses[0]
        for name, qtype, expected in (("spark-driver.jobs.pod.cluster.local", "A", ["10.244.3.3"]),
                                      ("3.3.244.10.in-addr.arpa", "PTR", ["spark-driver.jobs.pod.cluster.local."])):
            reply = await dns.asyncquery.udp(dns.message.make_query(name, qtype), host, port=port, timeout=2)
            assert sorted(rd.to_text() for rrset in reply.answer for rd in rrset) == expected
        assert any(r.resource == "pods" for r in fake_apiserver.lists())
    finally:
        await serving.close()
