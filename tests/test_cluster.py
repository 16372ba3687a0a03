"""The object store and the endpoint controllers it plays for manifest input."""

import clusterdns.records
from clusterdns.app import ClusterDNS
from clusterdns.cluster import Cluster
from clusterdns.events import Delete, Replace, Synced, Upsert
from clusterdns.objects import ENDPOINT_SLICE, NAMESPACE, SERVICE, read_object
from clusterdns.settings import Settings

from .builders import endpoint_slice, namespace, pod, service


def manifest_cluster(*objs):
    cluster = Cluster(derive_endpoints=True)
    cluster.apply([Upsert(o) for o in objs])
    return cluster


def test_endpoints_derived_from_selected_pods_with_named_target_port():
    cluster = manifest_cluster(
        service("web", selector={"app": "web"}, ports=(("http", 80, "web-port"),)),
        pod("web-1", "10.0.0.1", labels={"app": "web"}, ports=(("web-port", 8080),)),
        pod("web-2", "10.0.0.2", labels={"app": "web"}, ready=False, ports=(("web-port", 8080),)),
        pod("other", "10.0.0.3", labels={"app": "other"}),
    )
    (slice_,) = cluster.endpoint_slices(("default", "web"))
    assert [(e.addresses, e.ready) for e in slice_.endpoints] == [(("10.0.0.1",), True), (("10.0.0.2",), False)]
    assert [(p.name, p.port) for p in slice_.ports] == [("http", 8080)]


def test_publish_not_ready_and_hostname_from_subdomain():
    cluster = manifest_cluster(
        service("hs", cluster_ip="None", selector={"app": "x"}, publishNotReadyAddresses=True),
        pod("x-0", "10.0.0.1", labels={"app": "x"}, ready=False, hostname="x-0", subdomain="hs"),
        pod("x-1", "10.0.0.2", labels={"app": "x"}, hostname="x-1", subdomain="elsewhere"),
    )
    endpoints = cluster.endpoint_slices(("default", "hs"))[0].endpoints
    assert [(e.hostname, e.ready) for e in endpoints] == [("x-0", True), ("", True)]


def test_finished_pods_are_not_endpoints():
    cluster = manifest_cluster(
        service("web", selector={"app": "web"}),
        pod("done", "10.0.0.1", labels={"app": "web"}, phase="Succeeded"),
    )
    assert cluster.endpoint_slices(("default", "web")) == []


def test_given_slices_win_over_derivation_and_endpoints_are_mirrored():
    endpoints = read_object(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "db"},
            "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "notReadyAddresses": [{"ip": "192.0.2.2"}], "ports": [{"name": "pg", "port": 5432}]}],
        }
    )
    cluster = manifest_cluster(
        service("db", ports=(("pg", 5432, None),)),
        endpoints,
        service("web", selector={"app": "web"}),
        pod("web-1", "10.0.0.1", labels={"app": "web"}),
        endpoint_slice("web-abc", "web", ["10.9.9.9"]),
    )
    (mirrored,) = cluster.endpoint_slices(("default", "db"))
    assert [(e.addresses[0], e.ready) for e in mirrored.endpoints] == [("192.0.2.1", True), ("192.0.2.2", False)]
    assert [e.addresses[0] for s in cluster.endpoint_slices(("default", "web")) for e in s.endpoints] == ["10.9.9.9"]


def test_changes_name_only_what_is_affected():
    cluster = manifest_cluster(
        service("a", selector={"app": "a"}),
        service("b", cluster_ip="10.96.0.101", selector={"app": "b"}),
    )
    changes = cluster.apply([Upsert(pod("a-1", "10.0.0.1", labels={"app": "a"}))])
    assert changes.services == {("default", "a")}
    # relabelling a pod touches both the service it left and the one it joined
    changes = cluster.apply([Upsert(pod("a-1", "10.0.0.1", labels={"app": "b"}))])
    assert changes.services == {("default", "a"), ("default", "b")}


def test_unchanged_object_is_no_change():
    svc = service("a")
    cluster = manifest_cluster(svc)
    assert not cluster.apply([Upsert(svc)])


def test_replace_swaps_a_kind_atomically():
    cluster = Cluster()
    cluster.apply([Upsert(service("a")), Upsert(service("b", cluster_ip="10.96.0.101"))])
    changes = cluster.apply([Replace(SERVICE, (service("b", cluster_ip="10.96.0.101"), service("c", cluster_ip="10.96.0.102")))])
    assert sorted(k[2] for k in cluster.objects) == ["b", "c"]
    assert changes.services == {("default", "a"), ("default", "c")}


def test_slice_moving_between_services_updates_both():
    cluster = Cluster()
    cluster.apply([Upsert(endpoint_slice("s1", "a", ["10.0.0.1"]))])
    changes = cluster.apply([Upsert(endpoint_slice("s1", "b", ["10.0.0.1"]))])
    assert changes.services == {("default", "a"), ("default", "b")}
    assert cluster.endpoint_slices(("default", "a")) == []
    cluster.apply([Delete((ENDPOINT_SLICE, "default", "s1"))])
    assert cluster.endpoint_slices(("default", "b")) == []


def test_a_zone_deferred_until_synced_builds_once_from_every_kind(monkeypatch):
    """serve's first sync: Services listed before their EndpointSlices get their records built once, with both."""
    built = []
    real = clusterdns.records.service_records
    monkeypatch.setattr(clusterdns.records, "service_records", lambda *a: built.append(a[0].name) or real(*a))
    dns = ClusterDNS(Settings(), required_kinds=(NAMESPACE, SERVICE, ENDPOINT_SLICE))
    dns.defer_until_synced()
    dns.sink([Replace(NAMESPACE, (namespace("default"),)), Synced(NAMESPACE)])
    dns.sink([Replace(SERVICE, (service("web", cluster_ip="10.96.0.5"),)), Synced(SERVICE)])
    assert dns.zone.records("web.default.svc.cluster.local.") is None and not dns.zone.complete
    dns.sink([Replace(ENDPOINT_SLICE, (endpoint_slice("web-1", "web", ["10.1.0.7"]),)), Synced(ENDPOINT_SLICE)])
    assert built == ["web"] and dns.zone.complete
    assert dns.zone.records("web.default.svc.cluster.local.")[1] == ("10.96.0.5",)
    assert dns.zone.records("10-1-0-7.web.default.svc.cluster.local.")[1] == ("10.1.0.7",)
    dns.sink([Upsert(service("web", cluster_ip="10.96.0.6"))])  # after the sync, each batch applies at once
    assert dns.zone.records("web.default.svc.cluster.local.")[1] == ("10.96.0.6",)


def test_a_deferred_zone_given_up_on_serves_what_arrived():
    """serve stops waiting at --startup-timeout: build_pending() builds what is known, later batches apply at once."""
    dns = ClusterDNS(Settings(), required_kinds=(NAMESPACE, SERVICE, ENDPOINT_SLICE))
    dns.defer_until_synced()
    dns.sink([Replace(NAMESPACE, (namespace("default"),)), Synced(NAMESPACE)])
    dns.sink([Replace(SERVICE, (service("web", cluster_ip="10.96.0.5"),)), Synced(SERVICE)])
    dns.build_pending()
    assert dns.zone.records("web.default.svc.cluster.local.")[1] == ("10.96.0.5",) and not dns.zone.complete
    dns.sink([Upsert(service("api", cluster_ip="10.96.0.7"))])
    assert dns.zone.records("api.default.svc.cluster.local.")[1] == ("10.96.0.7",)
