"""Which records each Kubernetes object produces (Kubernetes DNS spec, schema 1.1.0).

Pure functions from typed objects to :data:`~clusterdns.zone.RecordSets`, plus
:func:`apply_changes`, which feeds the zone the owners a batch touched.  To
find where a record type comes from, search this file for its name.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

from dnslib import QTYPE

from . import names
from .cluster import Changes, Cluster, ServiceRef
from .names import dashed, is_ip, reverse_name
from .objects import Endpoint, EndpointSlice, Pod, Service
from .settings import SCHEMA_VERSION, Settings
from .zone import RecordSets, Zone

APEX_OWNER = ("apex",)
ServiceRecords = Callable[[Service, list[EndpointSlice], Settings], RecordSets]


def service_name(service: Service | ServiceRef, settings: Settings) -> str:
    namespace, name = (service.namespace, service.name) if isinstance(service, Service) else service
    return names.service_name(namespace, name, settings.zone)


def address_record(ip: str) -> tuple[int, str]:
    return (QTYPE.AAAA, ip) if ":" in ip else (QTYPE.A, ip)


class _Sets:
    """Builder for RecordSets of plain values (see zone.to_rdata); keeps insertion order and drops repeats."""

    def __init__(self) -> None:
        self.sets: dict[str, dict[int, dict]] = defaultdict(lambda: defaultdict(dict))

    def add(self, name: str, qtype: int, value) -> None:
        self.sets[name][qtype][value] = None

    def done(self) -> RecordSets:
        return {
            name: {t: tuple(values) for t, values in by_type.items()}
            for name, by_type in self.sets.items()
        }


# ------------------------------------------------------------------------- services


def service_records(service: Service, slices: list[EndpointSlice], settings: Settings) -> RecordSets:
    name = service_name(service, settings)
    out = _Sets()
    if settings.noendpoints:
        slices = []
    if service.type == "ExternalName":
        if not is_ip(service.external_name):  # an IP is no name to alias: NXDOMAIN, as CoreDNS
            out.add(name, QTYPE.CNAME, service.external_name + ".")
        return out.done()
    if service.headless:
        _headless_records(service, name, slices, settings, out)
        return out.done()
    ready = ready_endpoints(slices)
    for ip in service.cluster_ips:
        out.add(reverse_name(ip), QTYPE.PTR, name)
    if settings.ignore_empty_service and not ready:
        return out.done()  # CoreDNS's option hides the forward names only
    for ip in service.cluster_ips:
        out.add(name, *address_record(ip))
    _endpoint_records(name, ready, settings, out)  # as CoreDNS: endpoint names exist under any service
    # One SRV per cluster IP and port before repeats merge (a dual-stack service's weight is 50), as CoreDNS.
    _srv_records(name, [(p.name, p.protocol, p.port, name) for p in service.ports for _ in service.cluster_ips], out)
    return out.done()


def _headless_records(
    service: Service, name: str, slices: list[EndpointSlice], settings: Settings, out: _Sets
) -> None:
    ready = ready_endpoints(slices)
    if not ready:
        return  # a headless service without ready endpoints does not exist (spec 2.4.1)
    srv: list[tuple[str, str, int, str]] = []
    for endpoint, slice_, endpoint_name in _endpoint_records(name, ready, settings, out):
        for ip in endpoint.addresses:  # one SRV per address and port before repeats merge, as CoreDNS counts
            out.add(name, *address_record(ip))
            srv.extend((p.name, p.protocol, p.port, endpoint_name) for p in slice_.ports)
    _srv_records(name, srv, out)


def _endpoint_records(name: str, ready, settings: Settings, out: _Sets) -> list[tuple[Endpoint, EndpointSlice, str]]:
    """``<endpoint>.<service>`` address records, and a PTR for each address.

    CoreDNS gives every ready endpoint address a PTR (it once limited them to
    hostnamed endpoints, as the spec says, and reverted because that broke
    users); ``ptr_hostnamed_only`` is the spec's rule.
    """
    named = []
    for endpoint, slice_ in ready:
        endpoint_name = names.endpoint_name(endpoint_label(endpoint, settings), name)
        for ip in endpoint.addresses:
            out.add(endpoint_name, *address_record(ip))
            if endpoint.hostname or not settings.ptr_hostnamed_only:
                out.add(reverse_name(ip), QTYPE.PTR, endpoint_name)
        named.append((endpoint, slice_, endpoint_name))
    return named


def ready_endpoints(slices: list[EndpointSlice]) -> list[tuple[Endpoint, EndpointSlice]]:
    """Ready IP endpoints, each address once even when slices overlap."""
    seen: set[str] = set()
    ready = []
    for slice_ in slices:
        if slice_.address_type == "FQDN":
            continue
        for endpoint in slice_.endpoints:
            if not endpoint.ready:
                continue
            fresh = tuple(ip for ip in endpoint.addresses if ip not in seen)
            if fresh:
                seen.update(fresh)
                ready.append((Endpoint(fresh, True, endpoint.hostname, endpoint.node_name, endpoint.target_pod), slice_))
    return ready


def endpoint_label(endpoint: Endpoint, settings: Settings) -> str:
    """An endpoint's name under its service: hostname, else pod name (option), else dashed IP."""
    if endpoint.hostname:
        return endpoint.hostname
    if settings.endpoint_pod_names and endpoint.target_pod:
        return endpoint.target_pod
    return dashed(endpoint.addresses[0])


def _srv_records(name: str, ports: list[tuple[str, str, int, str]], out: _Sets) -> None:
    """SRV at ``_port._proto.<service>`` for named ports and at ``<service>`` for all.

    Priority 0 and weight 100/N, N the entries of the record set *before*
    repeats merge, as CoreDNS computes it: ``ports`` has an entry per address.
    """
    by_owner: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for port_name, protocol, port, target in ports:
        by_owner[name].append((port, target))
        if port_name:
            by_owner[names.srv_owner(port_name, protocol, name)].append((port, target))
    made: dict[tuple[int, int, str], tuple[int, int, int, str]] = {}  # one tuple for the SRV two owners hold
    for owner, entries in by_owner.items():
        weight = max(1, 100 // len(entries))
        for port, target in dict.fromkeys(entries):
            out.add(owner, QTYPE.SRV, made.setdefault((weight, port, target), (0, weight, port, target)))


# --------------------------------------------------------------------- pods, apex


def pod_records(pod: Pod, settings: Settings) -> RecordSets:
    """With ``--pod-names``, ``<pod-name>.<ns>.pod.<zone>`` for a running pod, and a PTR from each of its
    IPs to that name.  (``--pods verified`` names are answered from :attr:`Zone.pods`: see pod_addresses.)"""
    out = _Sets()
    if settings.pod_names and pod.phase == "Running" and pod.ips and not pod.terminating:
        name = names.pod_name(pod.name, pod.namespace, settings.zone)
        for ip in pod.ips:
            out.add(name, *address_record(ip))
            out.add(reverse_name(ip), QTYPE.PTR, name)
    return out.done()


def pod_addresses(pod: Pod | None) -> tuple[str, ...]:
    """The addresses ``a-b-c-d.<ns>.pod.<zone>`` answers for under ``--pods verified``: every IP of a pod
    that has not finished and is not being deleted (CoreDNS drops a pod being deleted)."""
    if pod is None or pod.phase in ("Succeeded", "Failed") or pod.terminating:
        return ()
    return pod.ips


def namespace_records(namespace: str, exists: bool, settings: Settings) -> RecordSets:
    """An existing namespace's ``<ns>.svc.<zone>`` answers NODATA rather than NXDOMAIN."""
    return {names.namespace_name(namespace, settings.zone): {}} if exists else {}


def apex_records(dns_service: Service | None, settings: Settings) -> RecordSets:
    """NS and ``dns-version`` at the apex; SOA is built per answer from the serial."""
    out = _Sets()
    # Every zone names the cluster zone's server, which has an address (the kube-dns IP).
    for origin in settings.zones:
        out.add(origin, QTYPE.NS, f"ns.dns.{settings.zone}")
    out.add(f"dns-version.{settings.zone}", QTYPE.TXT, SCHEMA_VERSION)
    if dns_service is not None:
        for ip in dns_service.cluster_ips:
            out.add(f"ns.dns.{settings.zone}", *address_record(ip))
    return out.done()


# ------------------------------------------------------------------ cluster → zone


def apply_changes(
    zone: Zone, cluster: Cluster, changes: Changes, settings: Settings, records_of: ServiceRecords | None = None
) -> bool:
    """Recompute the owners ``changes`` names and commit; True if DNS data changed.

    ``records_of`` replaces :func:`service_records` (``clusterdns dev`` answers
    with addresses the laptop can reach).
    """
    records_of = records_of or service_records
    for ref in changes.services:
        service = cluster.service(ref) if cluster.visible(ref[0]) else None
        slices = cluster.endpoint_slices(ref) if service else []
        zone.replace(("svc", *ref), records_of(service, slices, settings) if service else {})
        if zone.catalog is not None:
            zone.catalog.service_changed(ref, service, slices)
        if ref == settings.dns_service:
            zone.replace(APEX_OWNER, apex_records(service, settings))
    for namespace in changes.namespaces:
        exists = cluster.namespace_exists(namespace)
        zone.replace(("ns", namespace), namespace_records(namespace, exists, settings))
        if zone.catalog is not None:
            zone.catalog.namespace_changed(namespace, exists)
    if settings.pods == "verified":
        for (_, namespace, name), before in changes.pods.items():
            zone.move_pod(namespace, pod_addresses(before), pod_addresses(cluster.pod(namespace, name)))
    if settings.pod_names:
        for key in changes.pods:
            pod = cluster.pod(key[1], key[2])
            zone.replace(key, pod_records(pod, settings) if pod else {})
    return zone.commit()
