"""Which address a Service answers with on a laptop: ``clusterip``, ``external`` or ``forward``.

* ``clusterip``: the in-cluster answer, for a VPN or tunnel that routes the service range.
* ``external``: what reaches the Service from outside (CoreDNS's ``k8s_external``
  idea): its LoadBalancer ingress IPs, or ingress hostname (a CNAME), or
  ``spec.externalIPs``, or a node's address for a NodePort (the SRV records
  then carry the node port).
* ``forward``: a loopback address of its own (127.x.y.z, a stable hash of
  context, namespace and name), where :mod:`.portforward` listens on the
  Service's ports and relays to a ready pod through the API.  Endpoints with
  a hostname (StatefulSet pods) get an address each, relayed to that pod only.

The mode comes from the Service's ``clusterdns.io/reach`` annotation, else the
context's ``--reach``, else ``auto``: ``external`` where the Service has an
external address, else ``forward``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

from dnslib import QTYPE

from ..objects import EndpointSlice, Node, Service
from ..records import ready_endpoints, service_name, service_records
from ..settings import Settings
from ..zone import RecordSets, Value

log = logging.getLogger("clusterdns.dev")

MODES = ("clusterip", "external", "forward")
AUTO = "auto"
MAX_NODE_ADDRESSES = 8  # NodePort answers: a few nodes are enough to reach one
NO_EXTERNAL = "has no external address (no LoadBalancer ingress, no spec.externalIPs, no NodePort on a node with an address)"


@dataclass(frozen=True)
class PodForward:
    """A named endpoint (a StatefulSet pod: ``db-0.db.ns.svc…``) forwarded on a loopback address of its own."""

    label: str  # its name under the Service (the endpoint's hostname)
    pod: str
    address: str


@dataclass(frozen=True)
class Reach:
    """How one Service answers, as ``dev status`` shows it."""

    mode: str  # clusterip, external, forward
    via: str  # what the address is: "cluster IP", "LoadBalancer ingress", "externalIPs", "NodePort", "loopback"
    addresses: tuple[str, ...] = ()  # A/AAAA data
    cname: str = ""  # LoadBalancer hostname
    node_ports: tuple[tuple[int, int], ...] = ()  # (port, nodePort) when answered with a node's address
    note: str = ""  # why there is no answer
    pods: tuple[PodForward, ...] = ()  # forward: the named endpoints, each with its own address


def parse_reach(values: Sequence[str], contexts: Sequence[str]) -> tuple[str, dict[str, str]]:
    """``--reach MODE`` and ``--reach CONTEXT=MODE`` → (default, per context).  Raises ValueError."""
    default, per_context = AUTO, {}
    for value in values:
        context, sep, mode = value.rpartition("=")
        if mode not in (*MODES, AUTO):
            raise ValueError(f"--reach {value}: expected {', '.join(MODES)} or {AUTO}, optionally CONTEXT=MODE")
        if not sep:
            default = mode
        elif context not in contexts:
            raise ValueError(f"--reach {value}: no context {context!r} is served (served: {', '.join(contexts)})")
        else:
            per_context[context] = mode
    return default, per_context


class LoopbackAddresses:
    """A stable 127.x.y.z per Service, unique within the process.

    127.0.0.0/16 is left out (127.0.0.1 is us, 127.0.0.53 systemd-resolved,
    127.0.1.1 Debian's hostname); a hash collision takes the next candidate.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, ...], str] = {}
        self._owner: dict[str, tuple[str, ...]] = {}
        self._pods: dict[tuple[str, str, str], set[str]] = {}  # a Service → its named endpoints holding one

    def address(self, key: tuple[str, ...]) -> str:
        found = self._by_key.get(key)
        if found is not None:
            return found
        for attempt in range(64):
            digest = hashlib.sha256(f"{'/'.join(key)}#{attempt}".encode()).digest()
            candidate = f"127.{1 + digest[0] % 254}.{digest[1]}.{1 + digest[2] % 254}"
            if candidate not in self._owner:
                if attempt:
                    log.info("loopback address for %s moved to %s (hash collision)", "/".join(key), candidate)
                self._by_key[key] = candidate
                self._owner[candidate] = key
                return candidate
        raise RuntimeError("no free loopback address")  # 64 collisions in 16 million: not in practice

    def release(self, key: tuple[str, ...]) -> None:
        address = self._by_key.pop(key, None)
        if address is not None:
            del self._owner[address]

    def pod_addresses(self, service: tuple[str, str, str], labels: Sequence[str]) -> list[str]:
        """Addresses for the named endpoints ``labels`` of ``service``; those of endpoints gone are released."""
        for gone in self._pods.get(service, set()) - set(labels):
            self.release((*service, gone))
        self._pods[service] = set(labels)
        return [self.address((*service, label)) for label in labels]

    def release_service(self, service: tuple[str, str, str]) -> None:
        self.release(service)
        for label in self._pods.pop(service, ()):
            self.release((*service, label))


def external_reach(service: Service, nodes: Sequence[Node]) -> Reach | None:
    """What reaches ``service`` from outside the cluster, in the order CoreDNS's k8s_external prefers; None if nothing."""
    exposure = service.exposure
    if exposure is None:
        return None
    if exposure.ingress_ips:
        return Reach("external", "LoadBalancer ingress", exposure.ingress_ips)
    if exposure.ingress_hostnames:
        return Reach("external", "LoadBalancer ingress hostname", cname=exposure.ingress_hostnames[0] + ".")
    if exposure.external_ips:
        return Reach("external", "externalIPs", exposure.external_ips)
    if exposure.node_ports:
        addresses = tuple(node.addresses[0] for node in sorted(nodes, key=lambda n: n.name) if node.addresses)
        if addresses:
            return Reach("external", "NodePort", addresses[:MAX_NODE_ADDRESSES], node_ports=exposure.node_ports)
    return None


class ReachPolicy:
    """Decides each Service's answer in one context and rewrites its records accordingly."""

    def __init__(self, context: str, mode: str, loopbacks: LoopbackAddresses, nodes: Callable[[], Sequence[Node]]):
        self.context = context
        self.mode = mode  # the context's mode: one of MODES, or auto
        self.loopbacks = loopbacks
        self.nodes = nodes

    def decide(self, service: Service, slices: Sequence[EndpointSlice] = ()) -> Reach:
        """How ``service`` answers; with its ``slices``, a forward also names its pods' own addresses."""
        annotated = service.exposure.reach if service.exposure is not None else ""
        mode = annotated if annotated in MODES else self.mode
        if service.type == "ExternalName" or mode == "clusterip":
            return Reach("clusterip", "cluster IP", service.cluster_ips)
        if mode in ("external", AUTO):
            found = external_reach(service, self.nodes())
            if found is not None:
                return found
            if mode == "external":
                return Reach("external", "none", note=f"service {service.name}.{service.namespace} {NO_EXTERNAL}")
        key = (self.context, service.namespace, service.name)
        named = [(endpoint.hostname, endpoint.target_pod) for endpoint, _ in ready_endpoints(list(slices))
                 if endpoint.hostname and endpoint.target_pod]
        addresses = self.loopbacks.pod_addresses(key, [label for label, _ in named]) if slices else []
        pods = tuple(PodForward(label, pod, address) for (label, pod), address in zip(named, addresses))
        return Reach("forward", "loopback", (self.loopbacks.address(key),), pods=pods)

    def forget(self, namespace: str, name: str) -> None:
        self.loopbacks.release_service((self.context, namespace, name))

    def records(self, service: Service, slices: list[EndpointSlice], settings: Settings) -> RecordSets:
        """:func:`~clusterdns.records.service_records`, with the service name answering as :meth:`decide` says."""
        # Rewritten in place below: a mutable copy of what service_records built.
        sets = {owner: dict(by_type) for owner, by_type in service_records(service, slices, settings).items()}
        reach = self.decide(service, slices)
        if reach.mode == "clusterip":
            return sets
        name = service_name(service, settings)
        own = {t: rds for t, rds in sets.get(name, {}).items() if t not in (QTYPE.A, QTYPE.AAAA)}
        if reach.cname:
            own = {QTYPE.CNAME: (reach.cname,)}  # a CNAME stands alone at its name
        elif reach.addresses:
            v4 = tuple(ip for ip in reach.addresses if ":" not in ip)  # plain values, as zone.py keeps them
            v6 = tuple(ip for ip in reach.addresses if ":" in ip)
            own.update({t: rds for t, rds in ((QTYPE.A, v4), (QTYPE.AAAA, v6)) if rds})
        if reach.node_ports:
            _use_node_ports(sets, name, dict(reach.node_ports))
            own = {**own, **({QTYPE.SRV: sets[name][QTYPE.SRV]} if QTYPE.SRV in sets.get(name, {}) else {})}
        sets[name] = own
        for forwarded in reach.pods:  # db-0.db.ns.svc…: that pod's own loopback address
            pod_name = f"{forwarded.label}.{name}"
            if pod_name in sets:
                kept = {t: rds for t, rds in sets[pod_name].items() if t not in (QTYPE.A, QTYPE.AAAA)}
                sets[pod_name] = {**kept, QTYPE.A: (forwarded.address,)}
        return sets


def _use_node_ports(sets: dict[str, dict[int, tuple[Value, ...]]], name: str, node_ports: dict[int, int]) -> None:
    """SRV records of the service carry the node port, which is what a client outside must dial."""
    for owner, by_type in sets.items():
        if owner != name and not owner.endswith("." + name):
            continue
        srv = [value for value in by_type.get(QTYPE.SRV, ()) if isinstance(value, tuple)]  # records.py's tuples
        if srv and srv[0][3].lower() == name:  # (priority, weight, port, target)
            by_type[QTYPE.SRV] = tuple(
                (priority, weight, node_ports.get(port, port), target) for priority, weight, port, target in srv
            )
