"""The object store, and the endpoint controllers a real cluster would run.

Objects are kept by ``(kind, namespace, name)``.  Applying a batch of events
returns :class:`Changes`: which services, namespaces and pods may now have
different DNS records, so the zone recomputes only those.

For manifest input (``derive_endpoints=True``) the store also plays two
controllers, so the manifests people write just work:

* the EndpointSlice controller: a Service with a selector and no slice of its
  own gets endpoints from the Pods it selects;
* the mirroring controller: a v1 Endpoints object becomes a slice.

Precedence for one service: its EndpointSlices, else its Endpoints, else Pods
through its selector.  A live cluster runs these controllers itself, so the
watch source leaves ``derive_endpoints`` off and only slices count.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .events import Delete, Event, Replace, Synced, Upsert
from .objects import (
    ENDPOINT_SLICE,
    ENDPOINTS,
    NAMESPACE,
    NODE,
    POD,
    SERVICE,
    Endpoint,
    EndpointPort,
    Endpoints,
    EndpointSlice,
    Key,
    KubeObject,
    Pod,
    Service,
)

ServiceRef = tuple[str, str]  # (namespace, name)


@dataclass
class Changes:
    """What a batch touched, as the zone needs to know it."""

    services: set[ServiceRef] = field(default_factory=set)
    namespaces: set[str] = field(default_factory=set)
    pods: dict[Key, Pod | None] = field(default_factory=dict)  # each pod as it was before the batch

    def __bool__(self) -> bool:
        return bool(self.services or self.namespaces or self.pods)

    def update(self, later: "Changes") -> None:
        """Fold a later batch's changes into these (a pod keeps its state from before the first batch)."""
        self.services |= later.services
        self.namespaces |= later.namespaces
        for key, before in later.pods.items():
            self.pods.setdefault(key, before)


class Cluster:
    def __init__(
        self, derive_endpoints: bool = False, implicit_namespaces: Iterable[str] = (), require_namespace: bool = False
    ):
        self.derive_endpoints = derive_endpoints
        # With a namespace label selector only matching Namespace objects arrive: services in
        # any other namespace must not be served.
        self.require_namespace = require_namespace
        self.objects: dict[Key, KubeObject] = {}
        self.synced: set[str] = set()
        self.counts: Counter[str] = Counter()  # objects per kind, kept up to date (metrics, status)
        # Namespaces that exist without a Namespace object (manifest mode: the
        # ones every cluster has).
        self.implicit_namespaces = frozenset(implicit_namespaces)
        # Indexes, so one event touches only what it affects.
        # (a tuple, not a set: a service has one slice or a few, and a set is 216 bytes)
        self._slices_by_service: dict[ServiceRef, tuple[str, ...]] = {}
        self._pods_by_namespace: dict[str, set[str]] = defaultdict(set)
        self._selector_services_by_namespace: dict[str, set[str]] = defaultdict(set)
        self._services_by_namespace: dict[str, set[str]] = defaultdict(set)
        # pod IP → the pod's key (its own tuple, not another), for autopath to know who asks;
        # None (no memory) unless enabled.
        self.pods_by_ip: dict[str, Key] | None = None

    # ------------------------------------------------------------------ reading

    def get(self, kind: str, namespace: str, name: str) -> KubeObject | None:
        return self.objects.get((kind, namespace, name))

    # (An object is kept under its own kind: the isinstance checks only tell mypy so.)

    def service(self, ref: ServiceRef) -> Service | None:
        obj = self.objects.get((SERVICE, *ref))
        return obj if isinstance(obj, Service) else None

    def pod(self, namespace: str, name: str) -> Pod | None:
        obj = self.objects.get((POD, namespace, name))
        return obj if isinstance(obj, Pod) else None

    def namespace_exists(self, name: str) -> bool:
        return name in self.implicit_namespaces or (NAMESPACE, "", name) in self.objects

    def visible(self, namespace: str) -> bool:
        """May names in ``namespace`` be served?"""
        return not self.require_namespace or self.namespace_exists(namespace)

    def count(self, kind: str) -> int:
        return self.counts[kind]

    def endpoint_slices(self, ref: ServiceRef) -> list[EndpointSlice]:
        """The slices that hold ``ref``'s endpoints, given or derived."""
        names = self._slices_by_service.get(ref)
        if names:
            slices = [self.objects[(ENDPOINT_SLICE, ref[0], n)] for n in sorted(names)]
            return [s for s in slices if isinstance(s, EndpointSlice)]
        if not self.derive_endpoints:
            return []
        endpoints = self.objects.get((ENDPOINTS, *ref))
        if isinstance(endpoints, Endpoints):
            return mirror_endpoints(endpoints)
        service = self.service(ref)
        if service is not None and service.selector:
            in_namespace = sorted(self._pods_by_namespace.get(ref[0], ()))
            pods = [pod for n in in_namespace if (pod := self.pod(ref[0], n)) is not None]
            return derive_slices(service, pods)
        return []

    # ------------------------------------------------------------------ writing

    def apply(self, events: Sequence[Event]) -> Changes:
        changes = Changes()
        for event in events:
            if isinstance(event, Upsert):
                self._put(event.obj.key, event.obj, changes)
            elif isinstance(event, Delete):
                self._put(event.key, None, changes)
            elif isinstance(event, Replace):
                self._replace(event.kind, event.objects, changes)
            elif isinstance(event, Synced):
                self.synced.add(event.kind)
        return changes

    def _replace(self, kind: str, objects: Sequence[KubeObject], changes: Changes) -> None:
        fresh = {obj.key: obj for obj in objects}
        for key in [k for k in self.objects if k[0] == kind and k not in fresh]:
            self._put(key, None, changes)
        for key, obj in fresh.items():
            self._put(key, obj, changes)

    def _put(self, key: Key, new: KubeObject | None, changes: Changes) -> None:
        old = self.objects.get(key)
        if old == new:
            return  # nothing DNS-visible changed
        if new is None:
            del self.objects[key]
            self.counts[key[0]] -= 1
        else:
            self.objects[key] = new
            self.counts[key[0]] += old is None
        kind, namespace, name = key
        # (The key's kind is the objects' class: the asserts only tell mypy so.)
        if kind == SERVICE:
            assert new is None or isinstance(new, Service)
            self._index_service(namespace, name, new)
            changes.services.add((namespace, name))
        elif kind == ENDPOINT_SLICE:
            assert (old is None or isinstance(old, EndpointSlice)) and (new is None or isinstance(new, EndpointSlice))
            for slice_ in (old, new):
                if slice_ is not None and slice_.service_name:
                    changes.services.add((namespace, slice_.service_name))
            self._index_slice(namespace, name, old, new)
        elif kind == ENDPOINTS:
            changes.services.add((namespace, name))
        elif kind == NAMESPACE:
            changes.namespaces.add(name)
            if self.require_namespace:
                changes.services.update((name, svc) for svc in self._services_by_namespace.get(name, ()))
        elif kind == NODE:
            # A node's addresses are the answers of every NodePort Service (clusterdns dev).
            changes.services.update(self._node_port_services())
        elif kind == POD:
            assert (old is None or isinstance(old, Pod)) and (new is None or isinstance(new, Pod))
            if self.pods_by_ip is not None:
                self._index_pod_ips(old, new)
            changes.pods.setdefault(key, old)
            if self.derive_endpoints:  # only our EndpointSlice controller looks for pods by namespace
                if new is None:
                    self._pods_by_namespace[namespace].discard(name)
                else:
                    self._pods_by_namespace[namespace].add(name)
                changes.services.update(self._services_selecting(namespace, old, new))

    def index_pod_ips(self) -> None:
        """Keep :attr:`pods_by_ip` from now on (hostNetwork pods share the node's address: left out)."""
        self.pods_by_ip = {}
        for obj in self.objects.values():
            if isinstance(obj, Pod):  # (kept under POD keys only)
                self._index_pod_ips(None, obj)

    def _index_pod_ips(self, old: Pod | None, new: Pod | None) -> None:
        if self.pods_by_ip is None:
            return
        if old is not None and not old.host_network:
            for ip in old.ips:
                if self.pods_by_ip.get(ip) == old.key:
                    del self.pods_by_ip[ip]
        if new is not None and not new.host_network and new.phase not in ("Succeeded", "Failed"):
            for ip in new.ips:
                self.pods_by_ip[ip] = new.key

    def nodes(self) -> list[KubeObject]:
        return [obj for key, obj in self.objects.items() if key[0] == NODE]

    def _node_port_services(self) -> set[ServiceRef]:
        refs = set()
        for namespace, names in self._services_by_namespace.items():
            for name in names:
                service = self.service((namespace, name))
                if service is not None and service.exposure is not None and service.exposure.node_ports:
                    refs.add((namespace, name))
        return refs

    def _index_service(self, namespace: str, name: str, service: Service | None) -> None:
        if service is not None:
            self._services_by_namespace[namespace].add(name)
        else:
            self._services_by_namespace[namespace].discard(name)
        if service is not None and service.selector:
            self._selector_services_by_namespace[namespace].add(name)
        else:
            self._selector_services_by_namespace[namespace].discard(name)

    def _index_slice(self, namespace: str, name: str, old: EndpointSlice | None, new: EndpointSlice | None) -> None:
        if old is not None and old.service_name:
            ref = (namespace, old.service_name)
            rest = tuple(n for n in self._slices_by_service.get(ref, ()) if n != name)
            if rest:
                self._slices_by_service[ref] = rest
            else:
                self._slices_by_service.pop(ref, None)
        if new is not None and new.service_name:
            ref = (namespace, new.service_name)
            names = self._slices_by_service.get(ref, ())
            if name not in names:
                self._slices_by_service[ref] = (*names, name)

    def _services_selecting(self, namespace: str, *pods: Pod | None) -> set[ServiceRef]:
        refs = set()
        for svc_name in self._selector_services_by_namespace.get(namespace, ()):
            service = self.service((namespace, svc_name))
            if service is not None and any(p is not None and selects(service, p) for p in pods):
                refs.add((namespace, svc_name))
        return refs


# ---------------------------------------------------------------------- controllers


def selects(service: Service, pod: Pod) -> bool:
    selector = service.selector
    if not selector:
        return False
    labels = dict(pod.labels)
    return all(labels.get(k) == v for k, v in selector)


def mirror_endpoints(endpoints: Endpoints) -> list[EndpointSlice]:
    """v1 Endpoints → EndpointSlices, one per subset and address family."""
    slices = []
    for i, (addresses, ports) in enumerate(endpoints.subsets):
        for family, members in _by_family(addresses).items():
            slices.append(_slice(endpoints.namespace, endpoints.name, f"mirror-{i}-{family.lower()}", family, members, ports))
    return slices


def derive_slices(service: Service, pods: Iterable[Pod]) -> list[EndpointSlice]:
    """What the EndpointSlice controller would write for ``service``.

    Pods that are selected, have an IP and are neither finished nor terminating
    become endpoints; ready follows the pod's Ready condition unless the
    service publishes not-ready addresses.  Pods whose named target ports
    resolve differently land in different slices, as in a real cluster.
    """
    families = _service_families(service)
    groups: dict[tuple[tuple[EndpointPort, ...], str], list[Endpoint]] = defaultdict(list)
    for pod in pods:
        if not selects(service, pod) or not pod.ips or pod.phase in ("Succeeded", "Failed") or pod.terminating:
            continue
        ports = _resolve_ports(service, pod)
        hostname = pod.hostname if pod.hostname and pod.subdomain == service.name else ""
        ready = pod.ready or service.publish_not_ready
        for ip in pod.ips:
            family = _family(ip)
            if families and family not in families:
                continue
            groups[(ports, family)].append(
                Endpoint(
                    addresses=(ip,), ready=ready, hostname=hostname, node_name=pod.node_name, target_pod=pod.name,
                    serving=pod.ready,
                )
            )
    slices = []
    for i, ((ports, family), endpoints) in enumerate(sorted(groups.items(), key=lambda kv: (kv[0][1], repr(kv[0][0])))):
        slices.append(_slice(service.namespace, service.name, f"derived-{i}", family, endpoints, ports))
    return slices


def _slice(namespace: str, service_name: str, suffix: str, family: str, endpoints, ports) -> EndpointSlice:
    """A slice one of our controllers writes for ``service_name``."""
    return EndpointSlice(
        namespace=namespace,
        name=f"{service_name}-{suffix}",
        service_name=service_name,
        address_type=family,
        endpoints=tuple(endpoints),
        ports=tuple(ports),
    )


def _resolve_ports(service: Service, pod: Pod) -> tuple[EndpointPort, ...]:
    ports = []
    for sp in service.ports:
        target = sp.target_port if sp.target_port is not None else sp.port
        if isinstance(target, str):
            number = next(
                (cp.port for cp in pod.container_ports if cp.name == target and cp.protocol == sp.protocol), None
            )
            if number is None:
                continue  # the pod does not expose that named port: no endpoint port for it
            target = number
        ports.append(EndpointPort(name=sp.name, port=target, protocol=sp.protocol))
    return tuple(ports)


def _service_families(service: Service) -> set[str]:
    if service.ip_families:
        return set(service.ip_families)
    return {_family(ip) for ip in service.cluster_ips}


def _family(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"  # ip is canonical (objects.py read it)


def _by_family(endpoints: Iterable[Endpoint]) -> dict[str, list[Endpoint]]:
    out: dict[str, list[Endpoint]] = defaultdict(list)
    for e in endpoints:
        out[_family(e.addresses[0])].append(e)
    return out
