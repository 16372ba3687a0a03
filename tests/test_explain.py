"""`clusterdns resolve`, `resolv-conf` and `env` as a user runs them: manifests, a running server over real
sockets, and a live cluster (the fake API server through the real kubernetes client)."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from tests.fake_apiserver import FakeApiServer, endpoint_slice, namespace, service
from tests.dnsserver import RunningServer

from .test_cli import CLI, ENV, ROOT, run


def walk_of(*args) -> tuple[int, dict]:
    result = run("resolve", *args, "--json")
    assert result.stderr == "", result.stderr
    return result.returncode, json.loads(result.stdout)


def test_resolve_from_the_manifests_shows_each_candidate_and_the_winner():
    result = run("resolve", "cart.shop")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("resolver glibc; search default.svc.cluster.local svc.cluster.local cluster.local; ndots:5")
    assert "A and AAAA in parallel" in lines[1]
    first = next(i for i, line in enumerate(lines) if line.lstrip().startswith("1  "))
    assert "cart.shop.default.svc.cluster.local." in lines[first] and "NXDOMAIN" in lines[first]
    assert 'no service "shop" in namespace "default"' in lines[first]
    assert "cart.shop.svc.cluster.local." in lines[first + 2] and "A 10.96.100.60" in lines[first + 2]
    assert lines[-1] == "→ answered by #2 cart.shop.svc.cluster.local. after 4 queries"


def test_resolve_json_and_exit_status_when_nothing_answers():
    code, walk = walk_of("kubia", "--namespace", "shop")
    assert code == 1 and walk["answered_by"] is None
    assert [c["name"] for c in walk["candidates"]] == [
        "kubia.shop.svc.cluster.local.", "kubia.svc.cluster.local.", "kubia.cluster.local.", "kubia.",
    ]
    first = walk["candidates"][0]["queries"][0]
    assert first == {
        "type": "A", "rcode": "NXDOMAIN", "answers": [], "reason_code": 0, "transport": "udp", "tries": 1,
        "reason": 'no service "kubia" in namespace "shop"; it exists in "default"',
    }
    assert walk["candidates"][-1]["queries"][0]["rcode"] == "-"  # outside the zones: not asked in-process


def test_resolve_type_trailing_dot_and_a_real_resolv_conf(tmp_path):
    code, walk = walk_of("_http._tcp.kubia", "SRV")
    assert code == 0 and walk["types"] == ["SRV"] and walk["answered_by"] == 1
    code, walk = walk_of("kubia.default.svc.cluster.local.")
    assert code == 0 and [c["name"] for c in walk["candidates"]] == ["kubia.default.svc.cluster.local."]
    (tmp_path / "resolv.conf").write_text("search default.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:2 single-request\n")
    code, walk = walk_of("kubia.default.svc", "--resolv-conf", str(tmp_path / "resolv.conf"))
    assert walk["sending"] == "A, then AAAA (single-request)"
    assert [c["name"] for c in walk["candidates"]] == ["kubia.default.svc.", "kubia.default.svc.default.svc.cluster.local."]
    assert run("resolve", "kubia", "BOGUS").returncode == 2


def test_musl_stops_at_nodata_where_glibc_goes_on():
    # kubia.default has an A record but no AAAA: for an AAAA-less name glibc keeps walking on NODATA
    glibc_code, glibc = walk_of("default", "--namespace", "kube-system")
    musl_code, musl = walk_of("default", "--namespace", "kube-system", "--resolver", "musl")
    # default.kube-system.svc: NXDOMAIN; default.svc.cluster.local: the namespace, NODATA
    assert [c["outcome"] for c in glibc["candidates"]][:2] == ["next", "next"]
    assert [c["outcome"] for c in musl["candidates"]] == ["next", "stop"]
    assert glibc_code == musl_code == 1


def test_resolve_against_a_running_server_shows_its_reasons(zones_server):
    server = f"127.0.0.1:{zones_server.port}"
    code, walk = walk_of("kubia", "--namespace", "shop", "--server", server)
    assert code == 1
    reasons = [c["queries"][0]["reason"] for c in walk["candidates"]]
    assert reasons[0] == 'no service "kubia" in namespace "shop"; it exists in "default"'
    assert walk["candidates"][-1]["queries"][0]["rcode"] == "REFUSED"
    assert reasons[-1] == "outside the cluster zones and forwarding is off"
    code, walk = walk_of("kubia", "--server", server)
    assert code == 0 and walk["candidates"][0]["queries"][0]["answers"] == ["A 10.96.100.10"]
    assert walk["source"] == f"server {server}"


def test_truncated_answers_from_a_server(tmp_path):
    ips = [f"10.1.0.{i}" for i in range(1, 41)]
    (tmp_path / "big.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: big, namespace: default}\nspec: {clusterIP: None}\n---\n"
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
        "metadata: {name: big-1, namespace: default, labels: {kubernetes.io/service-name: big}}\naddressType: IPv4\n"
        f"endpoints: [{', '.join('{addresses: [' + ip + ']}' for ip in ips)}]\n"
    )
    with RunningServer([tmp_path]) as server:
        where = f"127.0.0.1:{server.port}"
        code, walk = walk_of("big", "--server", where)
        first = walk["candidates"][0]["queries"][0]
        assert code == 0 and first["transport"] == "udp+tcp" and len(first["answers"]) == 40
        code, walk = walk_of("big", "--server", where, "--resolver", "musl-old")
        first = walk["candidates"][0]["queries"][0]
        assert code == 1 and first["answers"] == [] and "no TCP retry" in first["transport"]


def test_a_server_that_never_answers_times_out_after_the_attempts(tmp_path):
    (tmp_path / "resolv.conf").write_text("search default.svc.cluster.local\noptions ndots:5 attempts:2 timeout:1\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        where = f"127.0.0.1:{silent.getsockname()[1]}"
        code, walk = walk_of("web", "SRV", "--server", where, "--resolv-conf", str(tmp_path / "resolv.conf"))
    assert code == 1 and len(walk["candidates"]) == 1
    assert walk["candidates"][0]["queries"][0] | {"reason": None} == {
        "type": "SRV", "rcode": "TIMEOUT", "answers": [], "reason": None, "reason_code": None, "transport": "udp", "tries": 2,
    }


def test_a_server_address_nothing_listens_on_is_told_at_once():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = run("resolve", "web", "--server", f"127.0.0.1:{port}")  # not 3 names x 2 tries x 5 s of timeouts
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"clusterdns resolve: cannot ask 127.0.0.1 port {port}: Connection refused\n"


def test_resolve_against_a_live_cluster(fake_apiserver: FakeApiServer, kubeconfig):
    fake_apiserver.add(namespace("default"))
    fake_apiserver.add(namespace("shop"))
    fake_apiserver.add(service("web", ip="10.96.0.5"))
    fake_apiserver.add(endpoint_slice("web-1", "web"))
    code, walk = walk_of("web", "--namespace", "shop", "--kubeconfig", str(kubeconfig))
    assert code == 1 and walk["source"] == "the live cluster"
    assert walk["candidates"][0]["queries"][0]["reason"] == 'no service "web" in namespace "shop"; it exists in "default"'
    code, walk = walk_of("web.default", "--namespace", "shop", "--kubeconfig", str(kubeconfig))
    assert code == 0 and walk["answered_by"] == 2
    assert walk["candidates"][1]["queries"][0]["answers"] == ["A 10.96.0.5"]
    result = run("resolv-conf", "--namespace", "shop", "--kubeconfig", str(kubeconfig))
    assert result.returncode == 1 and "--cluster-dns" in result.stderr  # this cluster has no kube-dns Service


def test_resolve_a_verified_pod_name_and_a_pods_resolv_conf_from_a_live_cluster(fake_apiserver: FakeApiServer,
                                                                                 kubeconfig):
    import yaml

    fake_apiserver.add(namespace("shop"))
    fake_apiserver.add(service("kube-dns", namespace="kube-system", ip="10.96.0.10"))
    fake_apiserver.add({"apiVersion": "v1", **yaml.safe_load(POD_WITH_DNS)})
    live = ("--kubeconfig", str(kubeconfig))
    code, walk = walk_of("10-244-9-9.shop.pod.cluster.local.", "--pods", "verified", *live)
    assert code == 0 and walk["candidates"][0]["queries"][0]["answers"] == ["A 10.244.9.9"]
    code, walk = walk_of("10-244-9-8.shop.pod.cluster.local.", "--pods", "verified", *live)
    assert code == 1
    assert walk["candidates"][0]["queries"][0]["reason"] == "no pod with IP 10.244.9.8 in namespace shop (--pods verified)"
    # the pod as the watch keeps it still has what kubelet reads (dnsPolicy, dnsConfig, enableServiceLinks)
    result = run("resolv-conf", "--pod", "shop/tuned", *live)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
        "nameserver 10.96.0.10\nnameserver 192.0.2.53\noptions ndots:2 single-request-reopen\n"
    )


# ----------------------------------------------------------------- resolv-conf


POD_WITH_DNS = """
apiVersion: v1
kind: Pod
metadata: {name: tuned, namespace: shop}
spec:
  dnsPolicy: ClusterFirst
  dnsConfig:
    nameservers: [192.0.2.53]
    searches: [corp.example]
    options: [{name: ndots, value: "2"}, {name: single-request-reopen}]
  enableServiceLinks: false
  containers: [{name: c}]
status: {phase: Running, podIP: 10.244.9.9}
"""


def test_resolv_conf_for_a_namespace_uses_the_kube_dns_ip_and_the_hosts_domains(tmp_path):
    (tmp_path / "host.conf").write_text("search corp.example lan\nnameserver 192.0.2.1\noptions timeout:1\n")
    result = run("resolv-conf", "--namespace", "shop", "--host-resolv-conf", str(tmp_path / "host.conf"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lan\n"
        "nameserver 10.96.0.10\noptions ndots:5\n"
    )
    default = run("resolv-conf", "--dns-policy", "Default", "--host-resolv-conf", str(tmp_path / "host.conf"))
    assert default.stdout == "search corp.example lan\nnameserver 192.0.2.1\noptions timeout:1\n"


def test_resolv_conf_of_a_pod_reads_its_dns_policy_and_config(tmp_path):
    (tmp_path / "pod.yaml").write_text(POD_WITH_DNS)
    result = run("resolv-conf", "--pod", "shop/tuned", "--manifests", "zones", str(tmp_path / "pod.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
        "nameserver 10.96.0.10\nnameserver 192.0.2.53\noptions ndots:2 single-request-reopen\n"
    )
    (tmp_path / "dns.yaml").write_text("nameservers: [192.0.2.9]\nsearches: [a.example]\n")
    none = run("resolv-conf", "--dns-policy", "None", "--dns-config", str(tmp_path / "dns.yaml"))
    assert none.stdout == "search a.example\nnameserver 192.0.2.9\n"
    (tmp_path / "bad.yaml").write_text("nameservers: [192.0.2.9]\nsearch: [a.example]\n")
    bad = run("resolv-conf", "--dns-config", str(tmp_path / "bad.yaml"))
    assert bad.returncode == 2 and "bad.yaml: dnsConfig.search: unknown field" in bad.stderr
    missing = run("resolv-conf", "--pod", "shop/nope")  # not in the data: an input error, not bad usage
    assert missing.returncode == 1 and "no Pod shop/nope" in missing.stderr


@pytest.mark.parametrize("option", ["--ttl", "--pods", "--server"])
def test_options_resolv_conf_does_not_use_are_refused(option):
    result = run("resolv-conf", option, "5")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


# ----------------------------------------------------------------- env


def test_env_prints_kubelets_service_variables(tmp_path):
    result = run("env", "--namespace", "default")
    assert result.returncode == 0, result.stderr
    env = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert env["KUBIA_SERVICE_HOST"] == "10.96.100.10" and env["KUBIA_PORT_80_TCP_PROTO"] == "tcp"
    assert env["NGINX_SERVICE_SERVICE_PORT_NAME_OF_SERVICE_PORT"] == "80"
    assert not any(k.startswith(("MY_SERVICE_", "DEFAULT_SUBDOMAIN_", "ZK_HS_")) for k in env)  # ExternalName, headless
    (tmp_path / "pod.yaml").write_text(POD_WITH_DNS)
    off = run("env", "--pod", "shop/tuned", "--manifests", "zones", str(tmp_path / "pod.yaml"))
    lines = off.stdout.splitlines()
    assert lines[0].startswith("# enableServiceLinks: false")
    assert all(line.startswith("KUBERNETES_") for line in lines[1:]) and len(lines) > 1


def test_env_warns_of_a_namespace_nothing_lives_in():
    typo = run("env", "--namespace", "defualt")
    assert typo.returncode == 0 and 'warning: no namespace "defualt" in the data (did you mean "default"?)' in typo.stderr
    assert typo.stdout.startswith("KUBERNETES_")  # what a pod there would still get
    assert "warning" not in run("env", "--namespace", "default").stderr


def test_a_reader_that_stops_early_gets_no_traceback():
    with subprocess.Popen([*CLI, "env", "--namespace", "default"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as cli:
        cli.stdout.close()  # as `| head -0` does: every write is a broken pipe
        _, stderr = cli.communicate(timeout=60)
    assert cli.returncode == 0 and b"Traceback" not in stderr, stderr
