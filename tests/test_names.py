"""The cluster name grammar (names.py): each kind of name, and pod labels read back."""

import pytest

from clusterdns import names

ZONE = "cluster.local."


def test_each_kind_of_name():
    web = names.service_name("shop", "web", ZONE)
    assert web == "web.shop.svc.cluster.local."
    assert names.namespace_name("shop", ZONE) == "shop.svc.cluster.local."
    assert names.endpoint_name("web-0", web) == "web-0.web.shop.svc.cluster.local."
    assert names.srv_owner("http", "TCP", web) == "_http._tcp.web.shop.svc.cluster.local."
    assert names.pod_parent(ZONE) == "pod.cluster.local."
    assert names.pod_name(names.dashed("10.1.2.3"), "shop", ZONE) == "10-1-2-3.shop.pod.cluster.local."
    assert names.reverse_name("10.1.2.3") == "3.2.1.10.in-addr.arpa."
    assert names.reverse_name("fd00::1").endswith(".0.0.d.f.ip6.arpa.")


@pytest.mark.parametrize("ip", ["10.1.2.3", "fd00::1", "2001:db8::a:b"])
def test_a_dashed_address_reads_back(ip):
    assert names.pod_ip(names.dashed(ip)) == ip


@pytest.mark.parametrize("label", ["web-0", "10-1-2", "10-1-2-3-4", "", "fd00-x--1"])
def test_other_labels_are_no_address(label):
    assert names.pod_ip(label) is None
