"""What kubelet puts into a pod for DNS: its resolv.conf, and the service environment variables.

Pure functions following kubelet's own rules (``pkg/kubelet/network/dns/dns.go``
and ``pkg/kubelet/envvars/envvars.go``), so ``clusterdns resolv-conf`` and
``clusterdns env`` print what a pod really gets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .names import namespace_name
from .objects import PodDNSConfig, Service
from .searchpath import DEFAULT_NDOTS, ResolvConf

MAX_SEARCH_DOMAINS = 32  # kubelet's limits (ExpandedDNSConfig, on by default since 1.28)
MAX_SEARCH_CHARS = 2048
MAX_SEARCH_DOMAIN_LENGTH = 253  # longer domains are dropped (glibc 2.28 aborts on them)
MAX_NAMESERVERS = 3
MASTER_SERVICES = ("kubernetes",)  # always in a pod's environment, from the default namespace


@dataclass
class PodResolvConf:
    conf: ResolvConf
    warnings: list[str] = field(default_factory=list)  # what kubelet would report as events


def pod_resolv_conf(
    namespace: str,
    *,
    cluster_domain: str,
    cluster_dns: tuple[str, ...],
    policy: str = "ClusterFirst",
    host_network: bool = False,
    host: ResolvConf | None = None,
    dns_config: PodDNSConfig | None = None,
) -> PodResolvConf:
    """The resolv.conf kubelet writes for a pod (dns.go ``GetPodDNS``).

    ``host`` is the node's resolv.conf (kubelet's ``--resolv-conf``); None is
    kubelet run with ``--resolv-conf=""``.
    """
    warnings: list[str] = []
    domain = cluster_domain.rstrip(".")
    base = host or ResolvConf()
    if policy == "ClusterFirst" and host_network:
        policy = "Default"  # a hostNetwork pod with ClusterFirst gets the node's DNS
        warnings.append("hostNetwork pod with dnsPolicy ClusterFirst: kubelet uses the node's DNS (Default)")
    if policy == "None":
        servers, search, options = [], [], []
    elif policy in ("ClusterFirst", "ClusterFirstWithHostNet") and cluster_dns:
        servers = list(cluster_dns)
        cluster_search = [namespace_name(namespace, domain), f"svc.{domain}", domain] if domain else []
        search = _unique(cluster_search + list(base.search))
        options = [f"ndots:{DEFAULT_NDOTS}"]
    else:
        if policy != "Default":
            warnings.append(f"no cluster DNS address known: kubelet falls back from {policy} to Default")
        servers, search, options = list(base.nameservers), list(base.search), list(base.options)
        if host is None:
            servers, search = ["127.0.0.1"], ["."]
    if dns_config is not None:
        servers = _unique(servers + list(dns_config.nameservers))
        search = _unique(search + list(dns_config.searches))
        options = _merge_options(options, dns_config.options)
    if len(servers) > MAX_NAMESERVERS:
        servers = servers[:MAX_NAMESERVERS]
        warnings.append(f"more than {MAX_NAMESERVERS} nameservers: kubelet keeps {' '.join(servers)}")
    search = _fit_search(search, warnings)
    return PodResolvConf(ResolvConf(tuple(servers), tuple(search), tuple(options)), warnings)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge_options(existing: list[str], extra: tuple[tuple[str, str | None], ...]) -> list[str]:
    """dnsConfig options override those of the same name (kubelet's order is a Go map's: ours is stable)."""
    merged: dict[str, str | None] = {}
    for text in existing:
        name, sep, value = text.partition(":")
        merged[name] = value if sep else None
    merged.update(extra)
    return [name if not value else f"{name}:{value}" for name, value in merged.items()]


def _fit_search(search: list[str], warnings: list[str]) -> list[str]:
    exceeded = False
    if len(search) > MAX_SEARCH_DOMAINS:
        search, exceeded = search[:MAX_SEARCH_DOMAINS], True
    kept = [d for d in search if len(d) <= MAX_SEARCH_DOMAIN_LENGTH]
    exceeded |= len(kept) != len(search)
    while len(" ".join(kept)) > MAX_SEARCH_CHARS:
        kept.pop()
        exceeded = True
    if exceeded:
        warnings.append(f"search line limits were exceeded, some search paths have been omitted: {' '.join(kept)}")
    return kept


# ----------------------------------------------------------------- environment


def env_name(name: str) -> str:
    """kubelet's makeEnvVariableName: upper case, dashes to underscores."""
    return name.replace("-", "_").upper()


def service_env(services: list[Service], namespace: str, enable_service_links: bool = True) -> dict[str, str]:
    """The ``*_SERVICE_HOST`` / ``*_PORT*`` variables kubelet gives a pod in ``namespace``.

    Services without a cluster IP (headless, ExternalName) are left out.  The
    ``kubernetes`` Service of the default namespace is always there; the
    others of the pod's namespace only with ``enableServiceLinks`` (the
    default), and a namespace's own service overrides the master one.
    """
    chosen: dict[str, Service] = {}
    for service in services:
        if not service.cluster_ips:
            continue
        if service.namespace == "default" and service.name in MASTER_SERVICES:
            chosen.setdefault(service.name, service)
        elif service.namespace == namespace and enable_service_links:
            chosen[service.name] = service
    env: dict[str, str] = {}
    for service in chosen.values():
        env.update(_service_variables(service))
    return dict(sorted(env.items()))


def _service_variables(service: Service) -> dict[str, str]:
    prefix = env_name(service.name)
    ip = service.cluster_ips[0]  # spec.clusterIP: the primary family
    out: dict[str, str] = {f"{prefix}_SERVICE_HOST": ip}
    if not service.ports:
        return out
    out[f"{prefix}_SERVICE_PORT"] = str(service.ports[0].port)
    for port in service.ports:
        if port.name:
            out[f"{prefix}_SERVICE_PORT_{env_name(port.name)}"] = str(port.port)
    host = f"[{ip}]" if ":" in ip else ip
    for i, port in enumerate(service.ports):
        protocol = port.protocol or "TCP"
        url = f"{protocol.lower()}://{host}:{port.port}"
        if i == 0:
            out[f"{prefix}_PORT"] = url  # Docker links special-case the first port
        port_prefix = f"{prefix}_PORT_{port.port}_{protocol.upper()}"
        out[port_prefix] = url
        out[f"{port_prefix}_PROTO"] = protocol.lower()
        out[f"{port_prefix}_PORT"] = str(port.port)
        out[f"{port_prefix}_ADDR"] = ip
    return out
