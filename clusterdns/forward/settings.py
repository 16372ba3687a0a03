"""The forwarding options, in one plain value (the CLI and a Corefile both map onto it)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..settings import absolute

Address = tuple[str, int]  # (IP, port); an IPv6 address may carry a %scope
POLICIES = ("random", "round_robin", "sequential")
DNS_PORT = 53


@dataclass(frozen=True, slots=True)
class Stub:
    """Names at or under ``zone`` go to ``upstreams`` instead of the default ones."""

    zone: str  # absolute, lower case
    upstreams: tuple[Address, ...]


@dataclass(frozen=True, slots=True)
class ForwardSettings:
    upstreams: tuple[Address, ...]
    stubs: tuple[Stub, ...] = ()
    policy: str = "random"  # CoreDNS forward's default
    max_concurrent: int = 1000  # forwarded queries in flight before REFUSED (kubeadm's Corefile: 1000); 0: 10,000
    cache_size: int = 10_000  # entries, each for success and for denial (CoreDNS cache's default)
    cache_max_ttl: int = 3600  # seconds a success is kept at most
    denial_max_ttl: int = 1800  # seconds a denial (NXDOMAIN, NODATA) is kept at most
    serve_stale: float = 0.0  # seconds an expired answer may still be served when upstreams fail
    try_timeout: float = 2.0  # seconds for one upstream before the next is tried
    timeout: float = 5.0  # seconds before a query that no upstream answered gets SERVFAIL
    health_check: float = 0.5  # seconds between health checks of a failed upstream (CoreDNS: 0.5 s)
    tcp_idle: float = 10.0  # seconds an idle pooled TCP connection is kept (CoreDNS's expire: 10 s)
    payload: int = 1232  # EDNS UDP payload size advertised upstream (DNS Flag Day 2020)
    loop_check: bool = True  # send the loop probe at start

    def __post_init__(self):
        if not self.upstreams and not self.stubs:
            raise ValueError("forwarding needs at least one upstream")
        if self.policy not in POLICIES:
            raise ValueError(f"upstream policy {self.policy!r}: expected one of {', '.join(POLICIES)}")


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str, what: str = "--upstream") -> Address:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``::1``, ``[::1]:5353``, ``fe80::1%eth0`` → (IP, port)."""
    text = text.strip()
    host, port = text, DNS_PORT
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{what} {text!r}: expected [IPv6]:PORT")
        if rest:
            port = _port(rest[1:], text, what)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, text, what)
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        raise ValueError(
            f"{what} {text!r}: expected an IP address with an optional port (a name would need DNS to be found)"
        ) from None
    return host, port


def _port(text: str, whole: str, what: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{what} {whole!r}: the port must be 1-65535")
    return int(text)


def parse_addresses(text: str, what: str = "--upstream") -> tuple[Address, ...]:
    """A comma-separated list of addresses (see :func:`parse_address`)."""
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError(f"{what} {text!r}: expected ADDR[:PORT][,ADDR[:PORT]...]")
    return tuple(parse_address(p, what) for p in parts)


def parse_stub(text: str) -> Stub:
    """``corp.example=10.0.0.53,10.0.0.54:5353`` → Stub."""
    zone, sep, addresses = text.partition("=")
    if not sep or not zone.strip() or not addresses.strip():
        raise ValueError(f"--stub {text!r}: expected ZONE=ADDR[,ADDR...], e.g. corp.example=192.0.2.53")
    return Stub(absolute(zone), parse_addresses(addresses, f"--stub {zone.strip()}"))
