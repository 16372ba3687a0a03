"""resolv.conf read as glibc reads it, and the names glibc and musl try for a lookup."""

import pytest

from clusterdns.kubelet import pod_resolv_conf
from clusterdns.searchpath import ResolvConf, candidates, parse_resolv_conf

POD = pod_resolv_conf("shop", cluster_domain="cluster.local.", cluster_dns=("10.96.0.10",)).conf


def test_a_pod_resolv_conf_reads_back_the_same():
    assert POD.render() == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    )
    assert parse_resolv_conf(POD.render()) == POD


@pytest.mark.parametrize(
    "name, glibc, musl",
    [
        ("web", ["web.shop.svc.cluster.local.", "web.svc.cluster.local.", "web.cluster.local.", "web."], None),
        (
            "web.default",
            ["web.default.shop.svc.cluster.local.", "web.default.svc.cluster.local.", "web.default.cluster.local.", "web.default."],
            None,
        ),
        # ndots or more: glibc tries it as written first, musl only as written
        (
            "a.b.c.d.e.f",
            ["a.b.c.d.e.f.", "a.b.c.d.e.f.shop.svc.cluster.local.", "a.b.c.d.e.f.svc.cluster.local.", "a.b.c.d.e.f.cluster.local."],
            ["a.b.c.d.e.f."],
        ),
        ("example.com.", ["example.com."], ["example.com."]),
    ],
)
def test_candidates_follow_ndots(name, glibc, musl):
    assert candidates(name, POD) == glibc
    assert candidates(name, POD, "musl") == (musl if musl is not None else glibc)


def test_parse_resolv_conf_like_glibc():
    conf = parse_resolv_conf(
        "domain a.example\nsearch b.example c.example.  # comment\nnameserver 10.0.0.1\n"
        "options ndots:20 edns0\noptions attempts:9 timeout:1 single-request\n"
    )
    assert conf.search == ("b.example", "c.example") and conf.nameservers == ("10.0.0.1",)
    assert (conf.ndots, conf.attempts, conf.timeout) == (15, 5, 1)  # glibc's caps
    assert conf.has("single-request") and conf.has("edns0") and not conf.has("use-vc")
    defaults = parse_resolv_conf("nameserver 1.1.1.1\n")
    assert (defaults.ndots, defaults.attempts, defaults.timeout) == (1, 2, 5)
    assert ResolvConf(options=("ndots:2", "ndots:3")).ndots == 3  # the last one wins
