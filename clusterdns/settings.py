"""The options that shape DNS answers, in one immutable value."""

from __future__ import annotations

from dataclasses import dataclass

POD_MODES = ("insecure", "verified", "disabled")
REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")
SCHEMA_VERSION = "1.1.0"
DNS_VERSION_TTL = 28800  # the spec's example: dns-version.<zone>. 28800 IN TXT "1.1.0"


@dataclass(frozen=True, slots=True)
class Settings:
    zone: str = "cluster.local."  # cluster domain, absolute, lower case
    ttl: int = 5
    pods: str = "insecure"  # CoreDNS `pods` option; kubeadm's default Corefile says insecure
    endpoint_pod_names: bool = False
    ptr_hostnamed_only: bool = False  # the spec's rule; CoreDNS (the default) gives every endpoint a PTR
    ignore_empty_service: bool = False
    autopath: bool = False  # the search walk done server-side for queries from known pods (--autopath)
    pod_names: bool = False  # <pod-name>.<ns>.pod.<zone> and its PTR for every running pod (--pod-names)
    noendpoints: bool = False  # CoreDNS's noendpoints: no endpoint watch, so no headless or endpoint names
    explain: bool = True  # Extended DNS Errors saying why a name missed (--no-explain turns them off)
    reverse: bool = True  # authoritative for in-addr.arpa and ip6.arpa, as CoreDNS's default Corefile
    dns_service: tuple[str, str] = ("kube-system", "kube-dns")  # its cluster IP is the NS address
    # EDNS payload size we advertise, and the most a UDP response may carry whatever the client
    # asks: the DNS Flag Day 2020 size, as CoreDNS; a cap on amplification.
    max_udp_size: int = 1232
    # The server forwards what it does not serve: RA on every answer, and names
    # outside the zones (and reverse names the cluster does not own) go upstream.
    recursion: bool = False

    @property
    def zones(self) -> tuple[str, ...]:
        return (self.zone, *REVERSE_ZONES) if self.reverse else (self.zone,)


def absolute(name: str) -> str:
    """Lower-case, dot-terminated form used for every name in the zone."""
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."
