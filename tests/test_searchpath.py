"""resolv.conf and the stub resolver's walk; `clusterdns resolve` on the example cluster."""

import pytest

from clusterdns.searchpath import ResolvConf, candidates, parse_resolv_conf, pod_resolv_conf

from .test_cli import run

POD = pod_resolv_conf("shop")


def test_kubelet_resolv_conf_for_a_cluster_first_pod():
    assert POD.render() == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    )
    assert parse_resolv_conf(POD.render()) == POD


@pytest.mark.parametrize(
    "name, expected",
    [
        ("web", ["web.shop.svc.cluster.local.", "web.svc.cluster.local.", "web.cluster.local.", "web."]),
        ("web.default", ["web.default.shop.svc.cluster.local.", "web.default.svc.cluster.local.", "web.default.cluster.local.", "web.default."]),
        ("a.b.c.d.e.f", ["a.b.c.d.e.f.", "a.b.c.d.e.f.shop.svc.cluster.local.", "a.b.c.d.e.f.svc.cluster.local.", "a.b.c.d.e.f.cluster.local."]),
        ("example.com.", ["example.com."]),
    ],
)
def test_candidates_follow_ndots(name, expected):
    assert candidates(name, POD) == expected


def test_parse_resolv_conf_like_glibc():
    conf = parse_resolv_conf("domain a.example\nsearch b.example c.example.  # comment\nnameserver 10.0.0.1\noptions ndots:20 edns0\n")
    assert conf == ResolvConf(("10.0.0.1",), ("b.example", "c.example"), 15)
    assert parse_resolv_conf("nameserver 1.1.1.1\n").ndots == 1


def test_resolve_explains_the_walk_and_exits_by_outcome():
    found = run("resolve", "cart.shop", "--namespace", "default")
    assert found.returncode == 0
    lines = found.stdout.splitlines()
    assert "cart.shop.default.svc.cluster.local." in lines[2] and "NXDOMAIN" in lines[2]
    assert "cart.shop.svc.cluster.local." in lines[3] and "A 10.96.100.60" in lines[3]
    assert "stops here after 2 queries" in lines[4]
    missing = run("resolve", "nosuch", "--namespace", "shop")
    assert missing.returncode == 1 and "no candidate answered" in missing.stdout
    assert run("resolve", "kubia", "--type", "BOGUS").returncode == 2


def test_resolv_conf_command_uses_the_kube_dns_ip():
    result = run("resolv-conf", "--namespace", "shop")
    assert result.returncode == 0 and result.stdout == POD.render()
