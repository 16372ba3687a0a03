"""Why a name does not resolve: the words behind NXDOMAIN, NODATA, SERVFAIL and REFUSED.

Two parts:

* :class:`Catalog`, facts the zone keeps per commit for the explanations (the
  namespaces, which namespaces hold a service of a given name, and per service
  its kind, endpoint names and port names).  :func:`records.apply_changes`
  updates it for the services and namespaces a batch touched, so no
  explanation scans the cluster.
* :func:`explain`, a function from (zone, name, outcome) to a :class:`Reason`:
  an RFC 8914 Extended DNS Error code and a sentence.  The answer path puts it
  in the OPT record of negative answers (so it is encoded once and cached with
  the answer); ``clusterdns resolve`` prints it.

Only served names are ever mentioned: the catalog holds what the zone serves
(namespaces and services a filter hides are not in it), so a reason tells
nothing a client could not learn by asking for the name it mentions.

The cluster name grammar is parsed here right to left (zone, ``svc``/``pod``,
namespace, service, then endpoint or ``_port._proto``), as CoreDNS's
``parse.go`` does; when a shared names module exists this should use it.
"""

from __future__ import annotations

import difflib
import ipaddress
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from cachetools import LRUCache
from dnslib import QTYPE, RCODE

from .objects import EndpointSlice, Service
from .names import pod_ip
from .records import endpoint_label, ready_endpoints

if TYPE_CHECKING:
    from .answer import Reader
    from .zone import Zone

EDE_OPTION = 15  # RFC 8914 option code
# RFC 8914 info codes we use.
OTHER, NOT_READY, NOT_AUTHORITATIVE, NO_REACHABLE_AUTHORITY, NETWORK_ERROR = 0, 14, 20, 22, 23
MAX_LISTED = 5  # names listed in one reason ("endpoints: a, b, c and 4 more"), and all a service's facts keep
SUGGESTION_CACHE = 1024  # "did you mean" results kept, by missing label
NAMESPACES_KEY = " namespaces"  # pseudo-names recorded as read, so the answer cache drops stale reasons


@dataclass(frozen=True, slots=True)
class Reason:
    code: int
    text: str

    def option(self) -> bytes:
        """The EDE option's data: info code and EXTRA-TEXT (UTF-8)."""
        return struct.pack("!H", self.code) + self.text.encode()


@dataclass(frozen=True, slots=True)
class ServiceFacts:
    """What explanations say about one service."""

    kind: str  # ClusterIP, headless, ExternalName (NodePort and LoadBalancer count as ClusterIP)
    ready: int  # ready endpoint addresses
    not_ready: int
    endpoints: tuple[str, ...]  # the first few endpoint names, sorted
    endpoint_count: int
    ports: tuple[tuple[str, str], ...]  # (name, protocol in lower case), named ports only
    external_name: str = ""


def _by_name_key(service: str) -> str:
    return f" service {service}"


def _service_key(namespace: str, service: str) -> str:
    return f" service {namespace}/{service}"


class Catalog:
    """The explanations' indexes, updated with the zone."""

    def __init__(self, zone: "Zone"):
        self.zone = zone
        self.namespaces: set[str] = set()
        self.services: dict[tuple[str, str], ServiceFacts] = {}
        # service name → namespaces holding one (a tuple: most names live in one namespace, and a set is 216 bytes)
        self.namespaces_of: dict[str, tuple[str, ...]] = {}
        self._suggestions: LRUCache[str, str | None] = LRUCache(maxsize=SUGGESTION_CACHE)
        # Most services name the same few ports ((http, tcp),): one tuple per distinct set, not per service.
        self._port_sets: PortSets = {}

    # ------------------------------------------------------------------ updates

    def service_changed(self, ref: tuple[str, str], service: Service | None, slices: list[EndpointSlice]) -> None:
        namespace, name = ref
        facts = service_facts(service, slices, self.zone.settings, self._port_sets) if service is not None else None
        if self.services.get(ref) == facts:
            return
        if facts is None:
            self.services.pop(ref, None)
            holders = tuple(n for n in self.namespaces_of.get(name, ()) if n != namespace)
            if holders:
                self.namespaces_of[name] = holders
            else:
                self.namespaces_of.pop(name, None)
        else:
            self.services[ref] = facts
            holders = self.namespaces_of.get(name, ())
            if namespace not in holders:
                self.namespaces_of[name] = (*holders, namespace)
        self.zone.touch((_service_key(namespace, name), _by_name_key(name)))

    def namespace_changed(self, namespace: str, exists: bool) -> None:
        if exists == (namespace in self.namespaces):
            return
        if exists:
            self.namespaces.add(namespace)
        else:
            self.namespaces.discard(namespace)
        self._suggestions.clear()
        self.zone.touch((NAMESPACES_KEY,))

    # ------------------------------------------------------------------ reading
    # ``reader`` is the zone as the answer sees it (answer.Reader): it remembers
    # the facts read, so a cached answer is dropped when one changes.

    def facts(self, reader, namespace: str, service: str) -> ServiceFacts | None:
        reader.read(_service_key(namespace, service))
        return self.services.get((namespace, service))

    def holders(self, reader, service: str) -> list[str]:
        reader.read(_by_name_key(service))
        return sorted(self.namespaces_of.get(service, ()))

    def namespace_known(self, reader, namespace: str) -> bool:
        """A served namespace: a Namespace object, or (live clusters without one) names under it."""
        reader.read(NAMESPACES_KEY)
        return namespace in self.namespaces or reader.exists(f"{namespace}.svc.{self.zone.settings.zone}")

    def suggest_namespace(self, reader, label: str) -> str | None:
        """The namespace ``label`` was probably meant to be (a typo), if one is close."""
        reader.read(NAMESPACES_KEY)
        if label not in self._suggestions:
            close = difflib.get_close_matches(label, self.namespaces, n=1, cutoff=0.75)
            self._suggestions[label] = close[0] if close else None
        return self._suggestions[label]


_LOWER = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}  # the protocols objects.py admits, one string each


def _lower(protocol: str) -> str:
    return _LOWER.get(protocol) or protocol.lower()


PortSets = dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]
PORT_SETS_KEPT = 4096  # distinct port sets a catalog shares before it starts over


def service_facts(service: Service, slices: list[EndpointSlice], settings, port_sets: PortSets | None = None) -> ServiceFacts:
    """What explanations say about ``service``; ``port_sets`` shares equal port tuples between services."""
    ready = ready_endpoints(slices)
    ready_ips = {ip for endpoint, _ in ready for ip in endpoint.addresses}
    not_ready = {
        ip
        for slice_ in slices
        if slice_.address_type != "FQDN"
        for endpoint in slice_.endpoints
        if not endpoint.ready
        for ip in endpoint.addresses
        if ip not in ready_ips
    }
    names = sorted({endpoint_label(endpoint, settings) for endpoint, _ in ready})
    if service.type == "ExternalName":
        kind = "ExternalName"
    elif service.headless:
        kind = "headless"
    else:
        kind = "ClusterIP"
    if kind == "headless":
        ports = {(p.name, _lower(p.protocol)) for _, slice_ in ready for p in slice_.ports if p.name}
    else:
        ports = {(p.name, _lower(p.protocol)) for p in service.ports if p.name}
    return ServiceFacts(
        kind=kind,
        ready=len(ready_ips),
        not_ready=len(not_ready),
        endpoints=tuple(names[:MAX_LISTED]),
        endpoint_count=len(names),
        ports=_shared(port_sets, tuple(sorted(ports))),
        external_name=service.external_name,
    )


def _shared(port_sets: PortSets | None, ports: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    if port_sets is None:
        return ports
    if len(port_sets) >= PORT_SETS_KEPT:  # a cache, not an index: bounded whatever the cluster does
        port_sets.clear()
    return port_sets.setdefault(ports, ports)


# ---------------------------------------------------------------------- explaining


def explain(zone: "Zone | Reader", name: str, qtype: int, rcode: int, types: Iterable[int] = ()) -> Reason | None:
    """Why ``name`` (lower case, absolute) answered ``rcode`` with no ``qtype`` records.

    ``types`` are the record types the name does have (for NODATA).  None when
    there is nothing to say (a positive answer).
    """
    if rcode == RCODE.REFUSED:
        if zone.origin_for(name) is None:
            return Reason(NOT_AUTHORITATIVE, "outside the cluster zones and forwarding is off")
        return Reason(NOT_AUTHORITATIVE, "only class IN is served")
    if rcode == RCODE.SERVFAIL:
        if not zone.complete:
            return Reason(NOT_READY, zone.incomplete_reason)
        return Reason(OTHER, "internal error")
    if rcode == 9:  # NOTAUTH: a transfer of a name that is no zone apex
        zones = ", ".join(z.rstrip(".") for z in zone.settings.zones)
        return Reason(OTHER, f"{_show(name)} is not a zone apex (zones: {zones})")
    if rcode not in (RCODE.NXDOMAIN, RCODE.NOERROR):
        return None
    nodata = rcode == RCODE.NOERROR
    note = zone.notes.get(name) or zone.notes.get("*")  # set by whoever shaped the records ("*": every name)
    if note:  # (clusterdns dev: --reach, and the parent of the per-context zones)
        return Reason(OTHER, note)
    text = _cluster_reason(zone, name, nodata) if zone.origin_for(name) == zone.settings.zone else None
    if text is None:
        text = _reverse_reason(name) if not nodata else None
    if text is None:
        text = _nodata_text(name, qtype, types) if nodata else f"no records at {_show(name)}"
    return Reason(OTHER, text)


def _cluster_reason(zone: "Zone | Reader", name: str, nodata: bool) -> str | None:
    """The reason for a miss under the cluster zone; None to fall back to the generic words."""
    catalog: Catalog | None = zone.catalog
    settings = zone.settings
    apex = settings.zone
    relative = name[: -len(apex) - 1] if name != apex else ""
    labels = relative.split(".") if relative else []
    if not labels or catalog is None:
        return None
    kind = labels[-1]
    if kind == "pod":
        return _pod_reason(zone, catalog, labels[:-1], nodata)
    if kind != "svc":
        if nodata:
            return None
        if len(labels) == 2 and catalog.facts(zone, labels[1], labels[0]):
            return f'no {_show(name)}: services are SERVICE.NAMESPACE.svc.{_show(apex)} (try {labels[0]}.{labels[1]}.svc.{_show(apex)})'
        return f'no "{kind}" under {_show(apex)}: cluster names end in .svc.{_show(apex)} or .pod.{_show(apex)}'
    rest = labels[:-1]  # ..., service, namespace
    if not rest:
        return None
    namespace = rest[-1]
    if not catalog.namespace_known(zone, namespace):
        text = _missing_namespace(zone, catalog, namespace)
        if len(rest) == 1:
            holders = catalog.holders(zone, namespace)
            if holders:  # kubia.svc.cluster.local: the namespace was left out
                text += f'; a service "{namespace}" exists in {_quoted_list(holders)}'
        return text
    if len(rest) == 1:
        return None if not nodata else f'namespace "{namespace}" exists; services are SERVICE.{namespace}.svc.{_show(apex)}'
    service = rest[-2]
    facts = catalog.facts(zone, namespace, service)
    if facts is None:
        text = f'no service "{service}" in namespace "{namespace}"'
        elsewhere = [ns for ns in catalog.holders(zone, service) if ns != namespace]
        if elsewhere:
            text += f"; it exists in {_quoted_list(elsewhere)}"
        return text
    if len(rest) == 2:
        return _service_reason(settings, service, facts, nodata)
    below = rest[:-2]  # endpoint, or _proto, or _port._proto
    if len(below) == 1 and not below[0].startswith("_"):
        return None if nodata else _missing_endpoint(service, below[0], facts)
    if len(below) == 1:
        protocols = sorted({proto for _, proto in facts.ports})
        if below[0][1:] in protocols:
            return None
        return f'no protocol "{below[0][1:]}" on {service}' + (f" (protocols: {', '.join(protocols)})" if protocols else " (no named ports)")
    if len(below) == 2 and below[0].startswith("_") and below[1].startswith("_"):
        return None if nodata else _missing_port(service, below[0][1:], below[1][1:], facts)
    return (
        f"too many labels under {service}.{namespace}.svc.{_show(apex)}: "
        "expected ENDPOINT.SERVICE or _PORT._PROTO.SERVICE"
    )


def _missing_namespace(zone: "Zone | Reader", catalog: Catalog, namespace: str) -> str:
    text = f'no namespace "{namespace}"'
    suggestion = catalog.suggest_namespace(zone, namespace)
    if suggestion:
        text += f' (did you mean "{suggestion}"?)'
    return text


def _service_reason(settings, service: str, facts: ServiceFacts, nodata: bool) -> str | None:
    if nodata:
        return None
    if facts.kind == "headless" and facts.ready == 0:
        return f"headless service {service} has 0 ready endpoints ({facts.not_ready} not ready)"
    if facts.kind == "ExternalName":
        return f"ExternalName service {service} points to an IP address ({facts.external_name}), not a name"
    if facts.ready == 0 and settings.ignore_empty_service:
        return f"service {service} has 0 ready endpoints ({facts.not_ready} not ready) and --ignore-empty-service hides it"
    return None


def _missing_endpoint(service: str, endpoint: str, facts: ServiceFacts) -> str:
    if not facts.endpoint_count:
        return f'no endpoint named "{endpoint}" in {service} (it has no ready endpoints; {facts.not_ready} not ready)'
    listed = _plain_list(facts.endpoints, facts.endpoint_count)
    return f'no endpoint named "{endpoint}" in {service} (endpoints: {listed})'


def _missing_port(service: str, port: str, protocol: str, facts: ServiceFacts) -> str:
    same_name = sorted(proto for name, proto in facts.ports if name == port)
    if same_name:
        return f'port "{port}" on {service} is {"/".join(same_name)}, not {protocol}'
    names = sorted({name for name, _ in facts.ports})
    if not names:
        return f'no port named "{port}" on {service} (it has no named ports)'
    return f'no port named "{port}" on {service} (ports: {_plain_list(names, len(names))})'


def _pod_reason(zone: "Zone | Reader", catalog: Catalog, labels: list[str], nodata: bool) -> str | None:
    settings = zone.settings
    if settings.pods == "disabled":
        return "pod records are disabled (--pods disabled)"
    if not labels or nodata:
        return None
    namespace = labels[-1]
    if not catalog.namespace_known(zone, namespace):
        return _missing_namespace(zone, catalog, namespace)
    if len(labels) > 2:
        return f"too many labels: pod names are A-B-C-D.{namespace}.pod.{_show(settings.zone)}"
    ip = pod_ip(labels[0])
    if ip is None:
        return f'"{labels[0]}" is not a dashed IP address (pod names look like 10-244-1-10.{namespace}.pod.{_show(settings.zone)})'
    if settings.pods == "verified":
        return f"no pod with IP {ip} in namespace {namespace} (--pods verified)"
    return None


def _reverse_reason(name: str) -> str | None:
    for suffix, version in ((".in-addr.arpa.", 4), (".ip6.arpa.", 6)):
        if name.endswith(suffix):
            parts = name[: -len(suffix)].split(".")
            try:
                if version == 4 and len(parts) == 4:
                    ip = str(ipaddress.IPv4Address(".".join(reversed(parts))))
                elif version == 6 and len(parts) == 32:
                    ip = str(ipaddress.IPv6Address(bytes.fromhex("".join(reversed(parts)))))
                else:
                    return None
            except ValueError:
                return None
            return f"no Service or named endpoint has the address {ip}"
    return None


def _nodata_text(name: str, qtype: int, types: Iterable[int]) -> str:
    present = sorted(QTYPE.get(t) for t in types if t != QTYPE.OPT)
    if present:
        return f"{_show(name)} has no {QTYPE.get(qtype)} record (it has {', '.join(present)})"
    return f"{_show(name)} exists but has no records of its own (names below it do)"


def _show(name: str) -> str:
    return name.rstrip(".")


def _quoted_list(items: list[str]) -> str:
    quoted = [f'"{item}"' for item in items[:MAX_LISTED]]
    more = len(items) - len(quoted)
    if more:
        return ", ".join(quoted) + f" and {more} more"
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _plain_list(items: Iterable[str], total: int) -> str:
    shown = list(items)[:MAX_LISTED]
    more = total - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")

