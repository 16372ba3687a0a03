"""Kubernetes objects cut down to what DNS needs.

This is the one module that reads Kubernetes API objects (the JSON the API
server sends, or the YAML people ``kubectl apply``).  Each reader validates the
fields it keeps and raises :class:`ObjectError` naming the field; everything
else in the object is dropped, which keeps memory small on big clusters and
makes "did anything DNS-visible change?" a plain ``==`` between two values.
"""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .names import canonical_ip

# Kinds we keep, by the name used in store keys.
SERVICE = "Service"
ENDPOINT_SLICE = "EndpointSlice"
ENDPOINTS = "Endpoints"
NAMESPACE = "Namespace"
POD = "Pod"
KINDS = (NAMESPACE, SERVICE, ENDPOINT_SLICE, ENDPOINTS, POD)
NODE = "Node"  # only `clusterdns dev` watches nodes (NodePort answers); not in KINDS

REACH_ANNOTATION = "clusterdns.io/reach"  # how `clusterdns dev` answers for one Service

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Labels = tuple[tuple[str, str], ...]
Key = tuple[str, str, str]  # (kind, namespace, name); namespace "" for Namespace


class ObjectError(ValueError):
    """A Kubernetes object that cannot be read; ``field`` is a JSON-path-like location."""

    def __init__(self, field: str, message: str, kind: str = "", namespace: str = "", name: str = ""):
        self.field = field
        self.message = message
        self.kind = kind
        self.namespace = namespace
        self.name = name
        super().__init__(str(self))

    @property
    def object_ref(self) -> str:
        """``Service default/web`` style reference, or just the kind when unnamed."""
        if not self.name:
            return self.kind or "object"
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"

    def __str__(self) -> str:
        location = f"{self.field}: " if self.field else ""
        return f"({self.object_ref}): {location}{self.message}"


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    port: int
    protocol: str  # TCP, UDP or SCTP
    target_port: int | str | None = None  # number, or a container port name


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    type: str  # ClusterIP, NodePort, LoadBalancer, ExternalName
    cluster_ips: tuple[str, ...] = ()  # empty when headless or ExternalName
    headless: bool = False
    ports: tuple[ServicePort, ...] = ()
    selector: Labels | None = None  # None: selectorless (endpoints managed by hand)
    external_name: str = ""
    publish_not_ready: bool = False
    labels: Labels = ()
    ip_families: tuple[str, ...] = ()  # IPv4 / IPv6, as spec.ipFamilies says
    exposure: "Exposure | None" = None  # None (most Services): nothing reaches it from outside the cluster
    # Made once: the stores that hold the object (the cluster, a source's last state) share one tuple.
    key: Key = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (SERVICE, self.namespace, self.name))


@dataclass(frozen=True, slots=True)
class Exposure:
    """How a Service is reached from outside the cluster (``clusterdns dev --reach external``).

    Kept only when there is something in it, so ordinary ClusterIP Services
    carry one empty slot.
    """

    ingress_ips: tuple[str, ...] = ()  # status.loadBalancer.ingress[].ip
    ingress_hostnames: tuple[str, ...] = ()  # status.loadBalancer.ingress[].hostname (a CNAME target)
    external_ips: tuple[str, ...] = ()  # spec.externalIPs
    node_ports: tuple[tuple[int, int], ...] = ()  # (port, nodePort) per TCP/UDP port that has one
    reach: str = ""  # the clusterdns.io/reach annotation, as written


@dataclass(frozen=True, slots=True)
class EndpointPort:
    name: str
    port: int
    protocol: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    addresses: tuple[str, ...]
    ready: bool = True
    hostname: str = ""
    node_name: str = ""
    target_pod: str = ""  # pod name when targetRef is a Pod in the slice's namespace
    serving: bool = True  # EndpointSlice conditions, shown by GET /zone (DNS uses ready)
    terminating: bool = False


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    namespace: str
    name: str
    service_name: str  # from the kubernetes.io/service-name label
    address_type: str  # IPv4, IPv6 or FQDN
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[EndpointPort, ...] = ()
    # Made once: the stores that hold the object (the cluster, a source's last state) share one tuple.
    key: Key = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (ENDPOINT_SLICE, self.namespace, self.name))


@dataclass(frozen=True, slots=True)
class Endpoints:
    """A v1 Endpoints object, already flattened to slice-like parts.

    The cluster stage mirrors it into EndpointSlices as the mirroring controller does.
    """

    namespace: str
    name: str
    subsets: tuple[tuple[tuple[Endpoint, ...], tuple[EndpointPort, ...]], ...] = ()
    # Made once: the stores that hold the object (the cluster, a source's last state) share one tuple.
    key: Key = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (ENDPOINTS, self.namespace, self.name))


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Labels = ()

    @property
    def namespace(self) -> str:
        return ""
    # Made once: the stores that hold the object (the cluster, a source's last state) share one tuple.
    key: Key = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (NAMESPACE, "", self.name))


@dataclass(frozen=True, slots=True)
class ContainerPort:
    name: str
    port: int
    protocol: str


DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")


@dataclass(frozen=True, slots=True)
class PodDNSConfig:
    """``spec.dnsConfig``: what kubelet merges into the pod's resolv.conf."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[tuple[str, str | None], ...] = ()  # (name, value)


@dataclass(frozen=True, slots=True)
class PodResolving:
    """What kubelet reads to write a pod's resolv.conf and service variables (resolv-conf, env, autopath).

    Pods without a dnsConfig share one value per combination (see :func:`_resolving`).
    """

    dns_policy: str = "ClusterFirst"  # interned
    dns_config: PodDNSConfig | None = None
    enable_service_links: bool = True
    host_network: bool = False


DEFAULT_RESOLVING = PodResolving()
_SHARED_RESOLVING: dict[PodResolving, PodResolving] = {DEFAULT_RESOLVING: DEFAULT_RESOLVING}  # at most 16


def _resolving(value: PodResolving) -> PodResolving:
    """``value``, or the equal one pods already share (without a dnsConfig there are at most 16)."""
    if value.dns_config is not None:
        return value
    return _SHARED_RESOLVING.setdefault(value, value)


@dataclass(frozen=True, slots=True)
class PodEndpointFields:
    """What only our own EndpointSlice controller reads (manifests): a live cluster runs its own."""

    ready: bool = False  # the Ready condition
    hostname: str = ""
    subdomain: str = ""
    labels: Labels = ()
    container_ports: tuple[ContainerPort, ...] = ()
    node_name: str = ""


NO_ENDPOINT_FIELDS = PodEndpointFields()


@dataclass(frozen=True, slots=True)
class Pod:
    """A Pod as DNS needs it; what fewer readers need is grouped, so a live pod's object stays small."""

    # (POD, namespace, name), made once: the store and the watch's own record share this one tuple
    # rather than building one each (at 150,000 pods, 20 MB).
    key: Key
    # The first address alone, the others (dual-stack) in a tuple: most pods have one, and a
    # one-address tuple each would be 7 MB at 150,000 pods.  Read them as ``ips``.
    ip: str = ""
    other_ips: tuple[str, ...] = ()
    phase: str = ""  # interned
    terminating: bool = False
    resolving: PodResolving = DEFAULT_RESOLVING
    endpoint_fields: PodEndpointFields = NO_ENDPOINT_FIELDS  # left out (the shared empty one) when live

    @property
    def namespace(self) -> str:
        return self.key[1]

    @property
    def name(self) -> str:
        return self.key[2]

    @property
    def ips(self) -> tuple[str, ...]:
        """Every address of the pod (status.podIPs), the first first; () before it has one."""
        return (self.ip, *self.other_ips) if self.ip else ()

    # Read through, so callers need not know the grouping.
    @property
    def dns_policy(self) -> str:
        return self.resolving.dns_policy

    @property
    def dns_config(self) -> PodDNSConfig | None:
        return self.resolving.dns_config

    @property
    def enable_service_links(self) -> bool:
        return self.resolving.enable_service_links

    @property
    def host_network(self) -> bool:
        return self.resolving.host_network

    @property
    def ready(self) -> bool:
        return self.endpoint_fields.ready

    @property
    def hostname(self) -> str:
        return self.endpoint_fields.hostname

    @property
    def subdomain(self) -> str:
        return self.endpoint_fields.subdomain

    @property
    def labels(self) -> Labels:
        return self.endpoint_fields.labels

    @property
    def container_ports(self) -> tuple[ContainerPort, ...]:
        return self.endpoint_fields.container_ports

    @property
    def node_name(self) -> str:
        return self.endpoint_fields.node_name


@dataclass(frozen=True, slots=True)
class Node:
    """A node's addresses, for NodePort answers: ExternalIP ones first, then InternalIP."""

    name: str
    addresses: tuple[str, ...] = ()

    @property
    def namespace(self) -> str:
        return ""

    @property
    def key(self) -> Key:
        return (NODE, "", self.name)


KubeObject = Service | EndpointSlice | Endpoints | Namespace | Pod | Node


# --------------------------------------------------------------------------- readers


class _Reader:
    """Typed access into one object's dict that reports the failing field."""

    def __init__(self, kind: str, namespace: str, name: str):
        self.kind, self.namespace, self.name = kind, namespace, name

    def fail(self, path: str, message: str) -> ObjectError:
        return ObjectError(path, message, self.kind, self.namespace, self.name)

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if type(value) is not dict and not isinstance(value, Mapping):  # dict first: the ABC check is slow
            raise self.fail(path, f"expected a mapping, got {_show(value)}")
        return value

    def sequence(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {_show(value)}")
        return value

    def string(self, value: Any, path: str, default: str = "") -> str:
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {_show(value)}")
        return value

    def token(self, value: Any, path: str, default: str = "") -> str:
        """A string that repeats across objects (a namespace, port name, node, label), interned: one copy in memory."""
        return sys.intern(self.string(value, path, default))

    def boolean(self, value: Any, path: str, default: bool = False) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {_show(value)}")
        return value

    def port(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise self.fail(path, f"expected an integer 1-65535, got {_show(value)}")
        return value

    def protocol(self, value: Any, path: str) -> str:
        proto = self.token(value, path, "TCP")
        if proto not in ("TCP", "UDP", "SCTP"):
            raise self.fail(path, f"expected TCP, UDP or SCTP, got {_show(value)}")
        return proto

    def ip(self, value: Any, path: str) -> str:
        ip = canonical_ip(self.string(value, path))
        if ip is None:
            raise self.fail(path, f"expected an IP address, got {_show(value)}")
        return ip

    def dns_label(self, value: Any, path: str) -> str:
        text = self.string(value, path)
        if text and not _is_dns_label(text):
            raise self.fail(path, f"expected a DNS label (a-z, 0-9, '-', at most 63), got {_show(value)}")
        return text

    def labels(self, value: Any, path: str, intern_values: bool = True) -> Labels:
        """Sorted (key, value) pairs; keys (and, unless told otherwise, values) interned: they repeat."""
        labels = self.mapping(value, path)
        out = []
        for k, v in labels.items():
            if not isinstance(k, str):
                raise self.fail(path, f"label keys must be strings, got {_show(k)}")
            if v is None:
                v = ""
            if isinstance(v, bool | int | float):
                raise self.fail(f"{path}.{k}", f"label values must be strings, got {_show(v)} (quote it)")
            v = self.string(v, f"{path}.{k}")
            out.append((sys.intern(k), sys.intern(v) if intern_values else v))
        return tuple(sorted(out))


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


# Names Kubernetes validates for the two kinds whose names become DNS labels.
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")  # Service names
_DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # Namespace names


def _check_name(reader: "_Reader", pattern: re.Pattern[str], rule: str) -> None:
    if len(reader.name) > 63 or not pattern.fullmatch(reader.name):
        raise reader.fail("metadata.name", f"expected {rule}, got {_show(reader.name)}")


_SERVICE_NAME_RULE = "an RFC 1035 label (a-z, 0-9, '-', starting with a letter, at most 63)"
_NAMESPACE_NAME_RULE = "an RFC 1123 label (a-z, 0-9, '-', at most 63)"


_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")  # 1-63 of a-z, 0-9, '-', no '-' at either end


def _is_dns_label(text: str) -> bool:
    return _DNS_LABEL.fullmatch(text) is not None


def _metadata(doc: Mapping[str, Any], kind: str, namespaced: bool) -> tuple[_Reader, Mapping[str, Any]]:
    meta_raw = doc.get("metadata")
    probe = _Reader(kind, "", "")
    meta = probe.mapping(meta_raw, "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise probe.fail("metadata.name", f"expected a non-empty string, got {_show(name)}")
    namespace = ""
    if namespaced:
        namespace = probe.token(meta.get("namespace"), "metadata.namespace", "default") or "default"
    reader = _Reader(kind, namespace, name)
    if namespaced and not _is_dns_label(namespace):
        raise reader.fail("metadata.namespace", f"expected a DNS label, got {_show(namespace)}")
    return reader, meta


def read_namespace(doc: Mapping[str, Any]) -> Namespace:
    r, meta = _metadata(doc, NAMESPACE, namespaced=False)
    _check_name(r, _DNS_1123_LABEL, _NAMESPACE_NAME_RULE)
    return Namespace(name=r.name, labels=r.labels(meta.get("labels"), "metadata.labels"))


def read_service(doc: Mapping[str, Any]) -> Service:
    r, meta = _metadata(doc, SERVICE, namespaced=True)
    _check_name(r, _DNS_1035_LABEL, _SERVICE_NAME_RULE)
    spec = r.mapping(doc.get("spec"), "spec")
    svc_type = r.token(spec.get("type"), "spec.type", "ClusterIP")
    if svc_type not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        raise r.fail("spec.type", f"expected ClusterIP, NodePort, LoadBalancer or ExternalName, got {_show(svc_type)}")

    ports = []
    for i, raw in enumerate(r.sequence(spec.get("ports"), "spec.ports")):
        path = f"spec.ports[{i}]"
        p = r.mapping(raw, path)
        target = p.get("targetPort")
        if target is not None and not isinstance(target, str):
            target = r.port(target, f"{path}.targetPort")
        ports.append(
            ServicePort(
                name=r.token(p.get("name"), f"{path}.name"),
                port=r.port(p.get("port"), f"{path}.port"),
                protocol=r.protocol(p.get("protocol"), f"{path}.protocol"),
                target_port=target,
            )
        )

    external_name = ""
    cluster_ips: tuple[str, ...] = ()
    headless = False
    if svc_type == "ExternalName":
        external_name = r.string(spec.get("externalName"), "spec.externalName").rstrip(".")
        if not external_name:
            raise r.fail("spec.externalName", "an ExternalName service needs spec.externalName")
    else:
        single = spec.get("clusterIP")
        raw_ips = spec.get("clusterIPs")
        if raw_ips is None and single is not None:
            raw_ips = [single]
        ips = [r.string(v, f"spec.clusterIPs[{i}]") for i, v in enumerate(r.sequence(raw_ips, "spec.clusterIPs"))]
        if ips and ips[0] == "None":
            headless = True
        else:
            cluster_ips = tuple(r.ip(v, f"spec.clusterIPs[{i}]") for i, v in enumerate(ips) if v)
        if single not in (None, "") and spec.get("clusterIPs") is not None:
            _check_cluster_ip_agrees(r, single, ips)

    families = tuple(
        r.token(v, f"spec.ipFamilies[{i}]") for i, v in enumerate(r.sequence(spec.get("ipFamilies"), "spec.ipFamilies"))
    )
    for i, family in enumerate(families):
        if family not in ("IPv4", "IPv6"):
            raise r.fail(f"spec.ipFamilies[{i}]", f"expected IPv4 or IPv6, got {_show(family)}")

    selector_raw = spec.get("selector")
    selector = r.labels(selector_raw, "spec.selector") if selector_raw else None
    return Service(
        namespace=r.namespace,
        name=r.name,
        type=svc_type,
        cluster_ips=cluster_ips,
        headless=headless,
        ports=tuple(ports),
        selector=selector,
        external_name=external_name,
        publish_not_ready=r.boolean(spec.get("publishNotReadyAddresses"), "spec.publishNotReadyAddresses"),
        labels=r.labels(meta.get("labels"), "metadata.labels"),
        ip_families=families,
        exposure=_exposure(r, doc, meta, spec, tuple(ports)),
    )


def _exposure(r: _Reader, doc: Mapping[str, Any], meta: Mapping[str, Any], spec: Mapping[str, Any],
              ports: tuple[ServicePort, ...]) -> Exposure | None:
    status = r.mapping(doc.get("status"), "status")
    balancer = r.mapping(status.get("loadBalancer"), "status.loadBalancer")
    ingress_ips, hostnames = [], []
    for i, raw in enumerate(r.sequence(balancer.get("ingress"), "status.loadBalancer.ingress")):
        entry = r.mapping(raw, f"status.loadBalancer.ingress[{i}]")
        if entry.get("ip"):
            ingress_ips.append(r.ip(entry.get("ip"), f"status.loadBalancer.ingress[{i}].ip"))
        elif entry.get("hostname"):
            hostnames.append(r.string(entry.get("hostname"), f"status.loadBalancer.ingress[{i}].hostname").rstrip(".").lower())
    external_ips = tuple(r.ip(v, f"spec.externalIPs[{i}]") for i, v in enumerate(r.sequence(spec.get("externalIPs"), "spec.externalIPs")))
    node_ports = []
    for i, raw in enumerate(r.sequence(spec.get("ports"), "spec.ports")):
        node_port = r.mapping(raw, f"spec.ports[{i}]").get("nodePort")
        if node_port is not None:
            node_ports.append((ports[i].port, r.port(node_port, f"spec.ports[{i}].nodePort")))
    annotations = r.mapping(meta.get("annotations"), "metadata.annotations")
    reach = r.string(annotations.get(REACH_ANNOTATION), f"metadata.annotations.{REACH_ANNOTATION}")
    if not (ingress_ips or hostnames or external_ips or node_ports or reach):
        return None
    return Exposure(tuple(ingress_ips), tuple(hostnames), external_ips, tuple(node_ports), reach)


def _check_cluster_ip_agrees(r: _Reader, single: Any, ips: list[str]) -> None:
    """Kubernetes rejects a Service whose clusterIP is not clusterIPs[0]; an edit of only one of them must not pass."""
    first = ips[0] if ips else ""
    text = r.string(single, "spec.clusterIP")
    same = text == first
    if not same and first and "None" not in (text, first):
        same = r.ip(text, "spec.clusterIP") == r.ip(first, "spec.clusterIPs[0]")
    if not same:
        raise r.fail("spec.clusterIP", f"{_show(text)} disagrees with spec.clusterIPs[0] {_show(first or None)}: "
                                       "Kubernetes requires them equal; edit both (or delete one)")


def _endpoint_ports(r: _Reader, raw_ports: Any, path: str) -> tuple[EndpointPort, ...]:
    ports = []
    for i, raw in enumerate(r.sequence(raw_ports, path)):
        p = r.mapping(raw, f"{path}[{i}]")
        if p.get("port") is None:  # EndpointSlice allows an unset port ("all ports")
            continue
        ports.append(
            EndpointPort(
                name=r.token(p.get("name"), f"{path}[{i}].name"),
                port=r.port(p.get("port"), f"{path}[{i}].port"),
                protocol=r.protocol(p.get("protocol"), f"{path}[{i}].protocol"),
            )
        )
    return tuple(ports)


def _target_pod(r: _Reader, raw: Any, path: str, namespace: str) -> str:
    ref = r.mapping(raw, path)
    if ref.get("kind") != "Pod":
        return ""
    if r.string(ref.get("namespace"), f"{path}.namespace", namespace) != namespace:
        return ""
    return r.string(ref.get("name"), f"{path}.name")


def read_endpoint_slice(doc: Mapping[str, Any]) -> EndpointSlice:
    r, meta = _metadata(doc, ENDPOINT_SLICE, namespaced=True)
    # Only the service-name label is kept (one per slice, not worth interning).
    labels = dict(r.labels(meta.get("labels"), "metadata.labels", intern_values=False))
    address_type = r.token(doc.get("addressType"), "addressType", "IPv4")
    if address_type not in ("IPv4", "IPv6", "FQDN"):
        raise r.fail("addressType", f"expected IPv4, IPv6 or FQDN, got {_show(address_type)}")
    endpoints = []
    for i, raw in enumerate(r.sequence(doc.get("endpoints"), "endpoints")):
        path = f"endpoints[{i}]"
        e = r.mapping(raw, path)
        addrs = r.sequence(e.get("addresses"), f"{path}.addresses")
        if address_type == "FQDN":
            addresses = tuple(r.string(a, f"{path}.addresses[{j}]") for j, a in enumerate(addrs))
        else:
            addresses = tuple(r.ip(a, f"{path}.addresses[{j}]") for j, a in enumerate(addrs))
        cond = r.mapping(e.get("conditions"), f"{path}.conditions")
        # Per the EndpointSlice API, an unset ready condition means ready, and an unset serving one defers to ready.
        ready = r.boolean(cond.get("ready"), f"{path}.conditions.ready", True)
        endpoints.append(
            Endpoint(
                addresses=addresses,
                ready=ready,
                hostname=r.dns_label(e.get("hostname"), f"{path}.hostname"),
                node_name=r.token(e.get("nodeName"), f"{path}.nodeName"),
                target_pod=_target_pod(r, e.get("targetRef"), f"{path}.targetRef", r.namespace),
                serving=r.boolean(cond.get("serving"), f"{path}.conditions.serving", ready),
                terminating=r.boolean(cond.get("terminating"), f"{path}.conditions.terminating"),
            )
        )
    return EndpointSlice(
        namespace=r.namespace,
        name=r.name,
        service_name=labels.get(SERVICE_NAME_LABEL, ""),
        address_type=address_type,
        endpoints=tuple(endpoints),
        ports=_endpoint_ports(r, doc.get("ports"), "ports"),
    )


def read_endpoints(doc: Mapping[str, Any]) -> Endpoints:
    r, _ = _metadata(doc, ENDPOINTS, namespaced=True)
    subsets = []
    for i, raw in enumerate(r.sequence(doc.get("subsets"), "subsets")):
        path = f"subsets[{i}]"
        s = r.mapping(raw, path)
        endpoints = []
        for field_name, ready in (("addresses", True), ("notReadyAddresses", False)):
            for j, raw_addr in enumerate(r.sequence(s.get(field_name), f"{path}.{field_name}")):
                apath = f"{path}.{field_name}[{j}]"
                a = r.mapping(raw_addr, apath)
                endpoints.append(
                    Endpoint(
                        addresses=(r.ip(a.get("ip"), f"{apath}.ip"),),
                        ready=ready,
                        serving=ready,
                        hostname=r.dns_label(a.get("hostname"), f"{apath}.hostname"),
                        node_name=r.token(a.get("nodeName"), f"{apath}.nodeName"),
                        target_pod=_target_pod(r, a.get("targetRef"), f"{apath}.targetRef", r.namespace),
                    )
                )
        subsets.append((tuple(endpoints), _endpoint_ports(r, s.get("ports"), f"{path}.ports")))
    return Endpoints(namespace=r.namespace, name=r.name, subsets=tuple(subsets))


def read_pod(doc: Mapping[str, Any], live: bool = False) -> Pod:
    """A Pod.  ``live``: from a live cluster's watch, which runs its own EndpointSlice controller, so
    what only ours reads (labels, container ports, hostname, subdomain, node) is not kept: at 150,000
    pods that is most of their memory.  CoreDNS keeps even less (name, namespace, IPs, deleting)."""
    r, meta = _metadata(doc, POD, namespaced=True)
    spec = r.mapping(doc.get("spec"), "spec")
    status = r.mapping(doc.get("status"), "status")

    ips: list[str] = []
    for i, raw in enumerate(r.sequence(status.get("podIPs"), "status.podIPs")):
        ips.append(r.ip(r.mapping(raw, f"status.podIPs[{i}]").get("ip"), f"status.podIPs[{i}].ip"))
    if not ips and status.get("podIP"):
        ips.append(r.ip(status.get("podIP"), "status.podIP"))

    policy = r.token(spec.get("dnsPolicy"), "spec.dnsPolicy", "ClusterFirst")
    if policy not in DNS_POLICIES:
        raise r.fail("spec.dnsPolicy", f"expected {', '.join(DNS_POLICIES)}, got {_show(policy)}")
    resolving = PodResolving(
        dns_policy=policy,
        dns_config=read_dns_config(spec.get("dnsConfig"), "spec.dnsConfig", r) if spec.get("dnsConfig") else None,
        enable_service_links=r.boolean(spec.get("enableServiceLinks"), "spec.enableServiceLinks", True),
        host_network=r.boolean(spec.get("hostNetwork"), "spec.hostNetwork"),
    )
    return Pod(
        key=(POD, r.namespace, r.name), ip=ips[0] if ips else "", other_ips=tuple(ips[1:]),
        phase=r.token(status.get("phase"), "status.phase"),
        terminating=meta.get("deletionTimestamp") is not None,
        resolving=_resolving(resolving),
        endpoint_fields=NO_ENDPOINT_FIELDS if live else _pod_endpoint_fields(r, meta, spec, status),
    )


def _pod_endpoint_fields(
    r: _Reader, meta: Mapping[str, Any], spec: Mapping[str, Any], status: Mapping[str, Any]
) -> PodEndpointFields:
    ready = False
    for i, raw in enumerate(r.sequence(status.get("conditions"), "status.conditions")):
        c = r.mapping(raw, f"status.conditions[{i}]")
        if c.get("type") == "Ready":
            ready = r.string(c.get("status"), f"status.conditions[{i}].status") == "True"
    container_ports = []
    for i, raw_c in enumerate(r.sequence(spec.get("containers"), "spec.containers")):
        c = r.mapping(raw_c, f"spec.containers[{i}]")
        for j, raw_p in enumerate(r.sequence(c.get("ports"), f"spec.containers[{i}].ports")):
            path = f"spec.containers[{i}].ports[{j}]"
            p = r.mapping(raw_p, path)
            container_ports.append(
                ContainerPort(
                    name=r.string(p.get("name"), f"{path}.name"),
                    port=r.port(p.get("containerPort"), f"{path}.containerPort"),
                    protocol=r.protocol(p.get("protocol"), f"{path}.protocol"),
                )
            )
    return PodEndpointFields(
        ready=ready,
        hostname=r.dns_label(spec.get("hostname"), "spec.hostname"),
        subdomain=r.dns_label(spec.get("subdomain"), "spec.subdomain"),
        labels=r.labels(meta.get("labels"), "metadata.labels"),
        container_ports=tuple(container_ports),
        node_name=r.string(spec.get("nodeName"), "spec.nodeName"),
    )


# Node addresses that can carry traffic to a NodePort, in the order they are preferred.
NODE_ADDRESS_TYPES = ("ExternalIP", "InternalIP")


def read_node(doc: Mapping[str, Any]) -> Node:
    r, _ = _metadata(doc, NODE, namespaced=False)
    status = r.mapping(doc.get("status"), "status")
    found: dict[str, list[str]] = {t: [] for t in NODE_ADDRESS_TYPES}
    for i, raw in enumerate(r.sequence(status.get("addresses"), "status.addresses")):
        entry = r.mapping(raw, f"status.addresses[{i}]")
        kind = entry.get("type")
        if kind in found:
            found[kind].append(r.ip(entry.get("address"), f"status.addresses[{i}].address"))
    return Node(name=r.name, addresses=tuple(a for t in NODE_ADDRESS_TYPES for a in found[t]))


def read_dns_config(raw: Any, path: str, r: "_Reader | None" = None) -> PodDNSConfig:
    """A PodDNSConfig (``spec.dnsConfig``, or a file of one); unknown fields are errors, not ignored."""
    r = r or _Reader("PodDNSConfig", "", "")
    config = r.mapping(raw, path)
    unknown = sorted(set(config) - {"nameservers", "searches", "options"})
    if unknown:
        raise r.fail(f"{path}.{unknown[0]}", "unknown field: expected nameservers, searches or options")
    nameservers = tuple(
        r.ip(v, f"{path}.nameservers[{i}]") for i, v in enumerate(r.sequence(config.get("nameservers"), f"{path}.nameservers"))
    )
    searches = tuple(
        r.string(v, f"{path}.searches[{i}]").rstrip(".")
        for i, v in enumerate(r.sequence(config.get("searches"), f"{path}.searches"))
    )
    options = []
    for i, raw_option in enumerate(r.sequence(config.get("options"), f"{path}.options")):
        option = r.mapping(raw_option, f"{path}.options[{i}]")
        name = r.string(option.get("name"), f"{path}.options[{i}].name")
        if not name:
            raise r.fail(f"{path}.options[{i}].name", "an option needs a name")
        value = option.get("value")
        options.append((name, None if value is None else r.string(value, f"{path}.options[{i}].value")))
    return PodDNSConfig(nameservers, searches, tuple(options))


# apiVersion each kind must carry, and its reader.
READERS: dict[str, tuple[tuple[str, ...], Callable[[Mapping[str, Any]], KubeObject]]] = {
    NAMESPACE: (("v1",), read_namespace),
    SERVICE: (("v1",), read_service),
    ENDPOINT_SLICE: (("discovery.k8s.io/v1",), read_endpoint_slice),
    ENDPOINTS: (("v1",), read_endpoints),
    POD: (("v1",), read_pod),
    NODE: (("v1",), read_node),
}


def read_object(doc: Mapping[str, Any], kind: str | None = None, live: bool = False) -> KubeObject | None:
    """Read one API object; None for a kind DNS does not use.

    ``kind`` is given by the watch source, whose list items carry no ``kind``;
    ``live`` too: a live cluster runs its own endpoint controllers (see read_pod).
    """
    kind = kind or doc.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ObjectError("kind", f"expected a kind such as Service, got {_show(kind)}")
    if kind not in READERS:
        _check_unknown_kind(doc, kind)
        return None
    versions, reader = READERS[kind]
    api_version = doc.get("apiVersion")
    if api_version is not None and api_version not in versions:
        # e.g. discovery.k8s.io/v1beta1, gone since Kubernetes 1.25: say so rather than skip quietly
        raise _object_error(doc, kind, "apiVersion", f"expected {' or '.join(versions)}, got {_show(api_version)}",
                            default_namespace="" if kind == NAMESPACE else "default")
    return read_pod(doc, live=True) if live and kind == POD else reader(doc)


# Built-in API groups and their kinds, as a v1.30+ apiserver serves them.  A kind that is
# not among its group's is a typo Kubernetes would reject ("no matches for kind"), not an
# object to skip quietly.  Other groups (custom resources) are skipped.
BUILTIN_KINDS: dict[str, frozenset[str]] = {
    group: frozenset(kinds.split())
    for group, kinds in {
        "v1": "Binding ComponentStatus ConfigMap Endpoints Event LimitRange Namespace Node PersistentVolume "
              "PersistentVolumeClaim Pod PodTemplate ReplicationController ResourceQuota Secret Service "
              "ServiceAccount List",
        "apps/v1": "ControllerRevision DaemonSet Deployment ReplicaSet StatefulSet",
        "batch/v1": "CronJob Job",
        "discovery.k8s.io/v1": "EndpointSlice",
        "networking.k8s.io/v1": "Ingress IngressClass NetworkPolicy",
        "policy/v1": "PodDisruptionBudget",
        "rbac.authorization.k8s.io/v1": "ClusterRole ClusterRoleBinding Role RoleBinding",
        "autoscaling/v1": "HorizontalPodAutoscaler",
        "autoscaling/v2": "HorizontalPodAutoscaler",
        "storage.k8s.io/v1": "CSIDriver CSINode CSIStorageCapacity StorageClass VolumeAttachment",
        "scheduling.k8s.io/v1": "PriorityClass",
        "coordination.k8s.io/v1": "Lease",
        "node.k8s.io/v1": "RuntimeClass",
        "events.k8s.io/v1": "Event",
        "certificates.k8s.io/v1": "CertificateSigningRequest",
        "apiextensions.k8s.io/v1": "CustomResourceDefinition",
        "apiregistration.k8s.io/v1": "APIService",
        "admissionregistration.k8s.io/v1": "MutatingWebhookConfiguration ValidatingAdmissionPolicy "
                                           "ValidatingAdmissionPolicyBinding ValidatingWebhookConfiguration",
    }.items()
}


def _check_unknown_kind(doc: Mapping[str, Any], kind: str) -> None:
    """Raise for a kind that no API serves under its apiVersion, or a near miss of one DNS reads."""
    api_version = doc.get("apiVersion")
    known = BUILTIN_KINDS.get(api_version) if isinstance(api_version, str) else None
    if kind.endswith("List") and kind != "List" and known is not None and kind[:-4] in known:
        return  # a ServiceList without items: nothing in it
    near = difflib.get_close_matches(kind, READERS, n=1, cutoff=0.75) or difflib.get_close_matches(
        kind, sorted(known or ()), n=1, cutoff=0.75)
    if known is not None and kind not in known:
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise _object_error(doc, kind, "kind", f"{_show(kind)} is not a kind of {api_version}{hint}")
    if api_version is None and near and near[0] in READERS:
        raise _object_error(doc, kind, "kind", f"{_show(kind)} is not a kind DNS reads (did you mean {near[0]}?)")


def _object_error(doc: Mapping[str, Any], kind: str, path: str, message: str, default_namespace: str = "") -> ObjectError:
    """An error for an object that no reader has taken apart: its name as best known."""
    metadata = doc.get("metadata")
    meta = metadata if isinstance(metadata, Mapping) else {}
    name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or default_namespace)
    return ObjectError(path, message, kind, namespace, name)
