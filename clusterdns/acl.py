"""Address lists for the listeners' access checks (--transfer-to, --http-debug-from)."""

from __future__ import annotations

import ipaddress
from typing import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = ("127.0.0.0/8", "::1/128")


def parse_networks(text: str, flag: str) -> tuple[Network, ...]:
    """``10.0.0.0/8,192.0.2.1`` → networks; ValueError naming the flag and the bad part."""
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{flag} {part!r}: expected an address or CIDR, e.g. 10.0.0.0/8 or ::1") from None
    return tuple(networks)


def allowed(client: str, networks: Sequence[Network]) -> bool:
    """Is ``client`` (an address as a socket reports it) in one of ``networks``?"""
    try:
        address = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)
