"""A synthetic cluster for the benchmarks, as Kubernetes API JSON, and the same data as a zone file.

Deterministic for a given size: the same objects every run, so clusterdns and
the peer servers are measured on identical data.  The mix is what a real
cluster holds: ClusterIP services (a tenth dual-stack), headless services with
3–10 endpoints carrying hostnames (StatefulSets), ExternalName aliases, and
named ports (so ``_port._proto`` SRV names exist).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

ZONE = "cluster.local"


@dataclass
class Cluster:
    """The generated objects, and what the query generators need to know about them."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    services: list[tuple[str, str, str]] = field(default_factory=list)  # (namespace, name, kind)
    ports: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # named ports per service
    hostnames: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # headless endpoints
    addresses: list[str] = field(default_factory=list)  # IPs with a PTR
    endpoint_count: int = 0
    pod_count: int = 0


def ipv4(n: int, base: int = 10) -> str:
    """The n-th usable address of ``base``/8 (last octet 1–254, so no two n share one)."""
    n = n // 254 * 256 + n % 254 + 1
    return f"{base}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def generate(services: int, namespaces: int = 20, endpoints_per_service: tuple[int, int] = (3, 10),
             pods: int = 0, seed: int = 1) -> Cluster:
    """``services`` Services spread over ``namespaces``; ``pods`` Pods (for ``--pods verified``)."""
    rng = random.Random(seed)
    out = Cluster()
    out.namespaces = [f"ns{i}" for i in range(namespaces)]
    for ns in out.namespaces:
        out.objects.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    endpoint_ip = 0x010000
    for s in range(services):
        ns = out.namespaces[s % namespaces]
        kind = ("clusterip", "clusterip", "clusterip", "clusterip", "headless", "headless", "headless",
                "external", "dual", "clusterip")[s % 10]
        name = f"svc{s}"
        ports = [{"name": "http", "port": 80, "protocol": "TCP"}]
        if s % 3 == 0:
            ports.append({"name": "metrics", "port": 9090, "protocol": "TCP"})
        meta = {"name": name, "namespace": ns}
        if kind == "external":
            spec: dict[str, Any] = {"type": "ExternalName", "externalName": f"db{s}.example.com"}
        elif kind == "headless":
            spec = {"type": "ClusterIP", "clusterIP": "None", "ports": ports}
        else:
            spec = {"type": "ClusterIP", "clusterIP": ipv4(s, 172), "clusterIPs": [ipv4(s, 172)], "ports": ports}
            if kind == "dual":
                v6 = f"fd00:10:96::{s:x}"
                spec.update(clusterIPs=[ipv4(s, 172), v6], ipFamilies=["IPv4", "IPv6"], ipFamilyPolicy="RequireDualStack")
            out.addresses.append(ipv4(s, 172))
        out.objects.append({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec})
        out.services.append((ns, name, kind))
        out.ports[(ns, name)] = [p["name"] for p in ports]
        if kind == "external":
            continue
        count = rng.randint(*endpoints_per_service)
        endpoints = []
        hostnames = []
        for e in range(count):
            ip = ipv4(endpoint_ip)
            endpoint_ip += 1
            item: dict[str, Any] = {"addresses": [ip], "conditions": {"ready": True}}
            if kind == "headless":
                item["hostname"] = f"{name}-{e}"
                hostnames.append(item["hostname"])
                out.addresses.append(ip)
            endpoints.append(item)
        out.endpoint_count += count
        if hostnames:
            out.hostnames[(ns, name)] = hostnames
        out.objects.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-abcde", "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": [{"name": p["name"], "port": 8000 + p["port"], "protocol": "TCP"} for p in ports],
        })
    for p in range(pods):
        ns = out.namespaces[p % namespaces]
        ip = ipv4(0x400000 + p)
        out.objects.append({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod{p}", "namespace": ns, "labels": {"app": f"a{p % 50}"}},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": "True"}]},
        })
    out.pod_count = pods
    return out


def write_manifests(cluster: Cluster, directory: Path) -> Path:
    """One multi-document YAML file, as ``kubectl get -o yaml`` users keep them."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "cluster.yaml"
    with path.open("w") as f:
        yaml.safe_dump_all(cluster.objects, f, sort_keys=False)
    return path


def zone_files(records: dict[str, dict[int, tuple]], origins: tuple[str, ...], serial: int, ttl: int) -> dict[str, str]:
    """Zone-file text per origin from clusterdns's own record sets, so both servers hold the same data."""
    from dnslib import QTYPE, RR, SOA

    from clusterdns.zone import to_rdata

    texts: dict[str, list[str]] = {o: [] for o in origins}
    for origin in origins:
        soa = RR(origin, QTYPE.SOA, ttl=ttl, rdata=SOA(f"ns.dns.{ZONE}.", f"hostmaster.{origin}",
                                                   (serial, 7200, 1800, 86400, ttl)))
        texts[origin].append(soa.toZone())
    for name, sets in records.items():
        origin = max((o for o in origins if name == o or name.endswith("." + o)), key=len, default=None)
        if origin is None:
            continue
        for qtype, rdatas in sets.items():
            for rdata in rdatas:
                texts[origin].append(RR(name, qtype, ttl=ttl, rdata=to_rdata(qtype, rdata)).toZone())
    return {o: "\n".join(lines) + "\n" for o, lines in texts.items()}


# --------------------------------------------------------------------- queries


def hit_queries(cluster: Cluster, rng: random.Random, count: int) -> Iterator[str]:
    """Existing names: A of services and endpoints, SRV, AAAA of dual-stack, CNAME of aliases, PTR."""
    for _ in range(count):
        ns, name, kind = rng.choice(cluster.services)
        fqdn = f"{name}.{ns}.svc.{ZONE}"
        pick = rng.random()
        if kind == "headless" and pick < 0.3:
            yield f"{rng.choice(cluster.hostnames[(ns, name)])}.{fqdn} A"
        elif pick < 0.45:
            yield f"_{rng.choice(cluster.ports[(ns, name)])}._tcp.{fqdn} SRV" if kind != "external" else f"{fqdn} CNAME"
        elif pick < 0.55 and cluster.addresses:
            ip = rng.choice(cluster.addresses)
            yield ".".join(reversed(ip.split("."))) + ".in-addr.arpa PTR"
        elif kind == "dual" and pick < 0.8:
            yield f"{fqdn} AAAA"
        else:
            yield f"{fqdn} A"


def mixed_queries(cluster: Cluster, rng: random.Random, count: int) -> Iterator[str]:
    """What ndots:5 pods send: every search domain tried in turn, A and AAAA, for cluster and outside names.

    A pod in namespace P resolving ``svc.ns`` asks ``svc.ns.P.svc.zone`` (NXDOMAIN)
    then ``svc.ns.svc.zone``; an outside name walks all three search domains
    (three NXDOMAIN) before the forwarder gets it, which is not ours to measure.
    """
    made = 0
    while made < count:
        pod_ns = rng.choice(cluster.namespaces)
        ns, name, _ = rng.choice(cluster.services)
        pick = rng.random()
        if pick < 0.35:  # short name from its own namespace: the first try is a hit
            tries = [f"{name}.{ns}.svc.{ZONE}"]
        elif pick < 0.7:  # name.namespace from another namespace
            tries = [f"{name}.{ns}.{pod_ns}.svc.{ZONE}", f"{name}.{ns}.svc.{ZONE}"]
        else:  # an outside name: three cluster misses
            outside = rng.choice(("api.github.com", "s3.amazonaws.com", "www.google.com", "registry.npmjs.org"))
            tries = [f"{outside}.{pod_ns}.svc.{ZONE}", f"{outside}.svc.{ZONE}", f"{outside}.{ZONE}"]
        for qtype in ("A", "AAAA"):
            for name_ in tries:
                yield f"{name_} {qtype}"
                made += 1


def unique_queries(cluster: Cluster, token: str, count: int) -> Iterator[str]:
    """Names never asked before (``token`` is new every run): the search-path misses of unique outside names."""
    for i in range(count):
        ns = cluster.namespaces[i % len(cluster.namespaces)]
        label = f"{token}-{i:x}"
        kind = i % 4
        if kind == 0:
            yield f"{label}.telemetry.example.com.{ns}.svc.{ZONE} A"
        elif kind == 1:
            yield f"{label}.bucket.s3.amazonaws.com.svc.{ZONE} AAAA"
        elif kind == 2:
            yield f"{label}.{ns}.svc.{ZONE} A"
        else:
            n, name, _ = cluster.services[i % len(cluster.services)]
            yield f"{label}.{name}.{n}.svc.{ZONE} A"
