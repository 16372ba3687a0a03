"""Reading Kubernetes objects: what is kept, and errors that name the field."""

import pytest

from clusterdns.objects import Endpoint, ObjectError, read_object


def service(**spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec}


def test_service_defaults_namespace_and_reads_dual_stack():
    svc = read_object(service(clusterIPs=["10.0.0.1", "fd00::1"], ports=[{"name": "http", "port": 80, "targetPort": "web"}]))
    assert svc.namespace == "default"
    assert svc.cluster_ips == ("10.0.0.1", "fd00::1")
    assert svc.ports[0].target_port == "web" and svc.ports[0].protocol == "TCP"
    assert not svc.headless


def test_headless_and_external_name():
    assert read_object(service(clusterIP="None")).headless
    ext = read_object(service(type="ExternalName", externalName="db.example.com."))
    assert ext.external_name == "db.example.com" and ext.cluster_ips == ()


def test_bad_port_names_field_and_object():
    with pytest.raises(ObjectError) as err:
        read_object(service(clusterIP="10.0.0.1", ports=[{"port": 80}, {"port": "http"}]))
    assert str(err.value) == '(Service default/web): spec.ports[1].port: expected an integer 1-65535, got "http"'


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"kind": "Service", "metadata": {}}, "metadata.name: expected a non-empty string, got nothing"),
        (service(clusterIP="10.0.0.300"), 'spec.clusterIPs[0]: expected an IP address, got "10.0.0.300"'),
        (service(type="Weird"), 'spec.type: expected ClusterIP, NodePort, LoadBalancer or ExternalName, got "Weird"'),
        (service(type="ExternalName"), "spec.externalName: an ExternalName service needs spec.externalName"),
        (service(selector={"app": 1}), "spec.selector.app: label values must be strings, got 1 (quote it)"),
        (service(ports=[{"port": 80, "protocol": "HTTP"}]), 'spec.ports[0].protocol: expected TCP, UDP or SCTP, got "HTTP"'),
        ({"kind": None}, "kind: expected a kind such as Service, got nothing"),
    ],
)
def test_errors_name_the_field(doc, message):
    with pytest.raises(ObjectError) as err:
        read_object(doc)
    assert message in str(err.value)


def test_other_kinds_are_skipped_but_old_versions_of_ours_are_errors():
    assert read_object({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}) is None
    with pytest.raises(ObjectError) as err:
        read_object({"apiVersion": "discovery.k8s.io/v1beta1", "kind": "EndpointSlice", "metadata": {"name": "x"}})
    assert str(err.value) == '(EndpointSlice default/x): apiVersion: expected discovery.k8s.io/v1, got "discovery.k8s.io/v1beta1"'


def test_endpoint_slice_unset_ready_counts_as_ready():
    es = read_object(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.1.0.1"], "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "shop"}},
                {"addresses": ["10.1.0.2"], "conditions": {"ready": False}, "hostname": "two"},
            ],
            "ports": [{"name": "http", "port": 8080}],
        }
    )
    assert es.service_name == "web"
    assert es.endpoints == (
        Endpoint(("10.1.0.1",), True, "", "", "web-1"),
        Endpoint(("10.1.0.2",), False, "two", "", "", serving=False),  # unset serving defers to ready
    )


def test_pod_keeps_only_dns_fields():
    pod = read_object(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "a"}, "annotations": {"big": "x" * 1000}},
            "spec": {"hostname": "h", "subdomain": "s", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.9"}, {"ip": "fd00::9"}], "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )
    assert pod.ips == ("10.0.0.9", "fd00::9") and pod.ready and pod.hostname == "h" and pod.subdomain == "s"
    assert pod.container_ports[0].port == 8080
    assert not hasattr(pod, "annotations")


def test_a_pod_from_a_live_watch_keeps_only_what_dns_and_kubelet_read():
    doc = {
        "metadata": {"name": "p", "namespace": "shop", "labels": {"app": "a"}, "deletionTimestamp": "2026-12-01T00:00:00Z"},
        "spec": {"hostname": "h", "subdomain": "s", "nodeName": "node-1", "dnsPolicy": "ClusterFirstWithHostNet",
                 "hostNetwork": True, "enableServiceLinks": False, "dnsConfig": {"searches": ["corp.example"]},
                 "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.9"}, {"ip": "fd00::9"}],
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }
    pod = read_object(doc, "Pod", live=True)
    assert (pod.namespace, pod.name, pod.ips, pod.phase, pod.terminating) == (
        "shop", "p", ("10.0.0.9", "fd00::9"), "Running", True)
    assert (pod.dns_policy, pod.host_network, pod.enable_service_links, pod.dns_config.searches) == (
        "ClusterFirstWithHostNet", True, False, ("corp.example",))
    # what only our own EndpointSlice controller reads (manifests) is left out: a live cluster runs its own
    assert (pod.ready, pod.labels, pod.container_ports, pod.hostname, pod.subdomain, pod.node_name) == (
        False, (), (), "", "", "")
    full = read_object(doc, "Pod")
    assert (full.ready, full.labels, full.hostname, full.node_name) == (True, (("app", "a"),), "h", "node-1")
    assert pod.phase is full.phase  # interned: one string for every pod, not one each
    del doc["spec"]["dnsConfig"]
    one, other = read_object(doc, "Pod", live=True), read_object({**doc, "metadata": {"name": "q"}}, "Pod", live=True)
    assert one.resolving is other.resolving  # without a dnsConfig, pods share their resolv.conf settings


@pytest.mark.parametrize("text, expected", [
    ("10.0.0.9", "10.0.0.9"), ("fd00:0:0::9", "fd00::9"),
    ("010.0.0.9", None), ("10.0.9", None), ("10.0.0.9 ", None), ("0x0a.0.0.9", None), ("10.0.0.256", None),
])
def test_pod_addresses_are_canonical_or_refused(text, expected):
    doc = {"metadata": {"name": "p"}, "status": {"podIP": text}}
    if expected is None:
        with pytest.raises(ObjectError, match="status.podIP: expected an IP address"):
            read_object(doc, "Pod", live=True)
    else:
        assert read_object(doc, "Pod", live=True).ips == (expected,)


def test_unchanged_dns_fields_compare_equal():
    a = read_object(service(clusterIP="10.0.0.1"))
    b_doc = service(clusterIP="10.0.0.1")
    b_doc["metadata"]["annotations"] = {"touched": "yes"}
    assert a == read_object(b_doc)


@pytest.mark.parametrize(
    "doc, message",
    [
        # What the API server would reject, which check must not pass.
        ({"apiVersion": "v1", "kind": "Sevice", "metadata": {"name": "web"}},
         '(Sevice web): kind: "Sevice" is not a kind of v1 (did you mean Service?)'),
        ({"kind": "EndpointSlices", "metadata": {"name": "web"}},
         '(EndpointSlices web): kind: "EndpointSlices" is not a kind DNS reads (did you mean EndpointSlice?)'),
        ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "Upper"}},
         "(Service default/Upper): metadata.name: expected an RFC 1035 label"),
        ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1st"}},
         "(Service default/1st): metadata.name: expected an RFC 1035 label"),
        ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a" * 64}},
         "metadata.name: expected an RFC 1035 label"),
        ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "Shop_1"}},
         '(Namespace Shop_1): metadata.name: expected an RFC 1123 label (a-z, 0-9, \'-\', at most 63), got "Shop_1"'),
        (service(clusterIP="10.0.0.1", clusterIPs=["10.0.0.2"]),
         '(Service default/web): spec.clusterIP: "10.0.0.1" disagrees with spec.clusterIPs[0] "10.0.0.2"'),
        (service(clusterIP="None", clusterIPs=["10.0.0.2"]), 'spec.clusterIP: "None" disagrees with spec.clusterIPs[0]'),
        (service(clusterIP="10.0.0.1", clusterIPs=[]), 'spec.clusterIP: "10.0.0.1" disagrees with spec.clusterIPs[0] nothing'),
    ],
)
def test_what_kubernetes_rejects_is_an_error(doc, message):
    with pytest.raises(ObjectError) as err:
        read_object(doc)
    assert message in str(err.value)


def test_what_kubernetes_accepts_still_reads():
    assert read_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "1-team"}}).name == "1-team"
    assert read_object(service(clusterIP="fd00::1", clusterIPs=["fd00:0::1", "10.0.0.1"])).cluster_ips[0] == "fd00::1"
    assert read_object(service(clusterIP="None", clusterIPs=["None"])).headless
    assert read_object(service(clusterIP="", clusterIPs=["10.0.0.1"])).cluster_ips == ("10.0.0.1",)
    # Other groups' kinds (custom resources included) and empty lists of ours are skipped, not errors.
    for doc in ({"apiVersion": "example.com/v1", "kind": "Sevice", "metadata": {"name": "x"}},
                {"apiVersion": "v1", "kind": "ServiceList", "items": []},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
                {"kind": "Widget", "metadata": {"name": "x"}}):
        assert read_object(doc) is None
