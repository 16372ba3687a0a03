"""The nameservers of a resolv.conf, read as glibc's resolver reads them.

glibc takes the first word after each ``nameserver`` keyword (the keyword must
start the line and be followed by a blank), skips addresses it cannot parse,
keeps at most three (``MAXNS``) and treats lines starting with ``#`` or ``;``
as comments.  IPv6 addresses may carry a scope (``fe80::1%eth0``).

A loopback nameserver (systemd-resolved's ``127.0.0.53``, dnsmasq on
``127.0.0.1``) is the classic forwarding loop once the DNS server itself runs
on the host or in a pod.  kubelet's rule applies: when systemd-resolved's full
list exists at ``/run/systemd/resolve/resolv.conf``, use that file instead;
otherwise refuse, saying what to pass.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

from .settings import DNS_PORT, Address

log = logging.getLogger(__name__)

MAXNS = 3
SYSTEMD_RESOLV_CONF = Path("/run/systemd/resolve/resolv.conf")


class ResolvConfError(ValueError):
    """The file gives no usable upstream; the message says what to pass instead."""


def nameservers(text: str) -> list[str]:
    """The nameserver addresses of resolv.conf ``text``, as glibc would use them."""
    found: list[str] = []
    for line in text.splitlines():
        if not line.startswith("nameserver") or line[len("nameserver") : len("nameserver") + 1] not in (" ", "\t"):
            continue  # comments (# ;) and other keywords; glibc needs the keyword at column 0
        words = line[len("nameserver") :].split()
        if not words:
            continue
        address = words[0]
        try:
            ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            continue  # glibc skips what inet_pton cannot read
        if len(found) < MAXNS:
            found.append(address)
    return found


def _is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback


def upstreams_from_file(path: str | Path, systemd_file: Path = SYSTEMD_RESOLV_CONF) -> tuple[Address, ...]:
    """The upstreams a resolv.conf names, following kubelet's systemd-resolved rule."""
    path = Path(path)
    try:
        servers = nameservers(path.read_text(errors="replace"))
    except OSError as exc:
        raise ResolvConfError(f"--upstream {path}: cannot read it: {exc.strerror or exc}") from exc
    if not servers:
        raise ResolvConfError(
            f"--upstream {path}: no nameserver lines (glibc would use 127.0.0.1, which would loop back here); "
            "pass --upstream ADDR[,ADDR] or --no-forward"
        )
    loopback = [s for s in servers if _is_loopback(s)]
    if loopback:
        if systemd_file.is_file() and systemd_file != path:
            log.info(
                "%s names the local stub %s: forwarding to the servers in %s instead, as kubelet does",
                path, ", ".join(loopback), systemd_file,
            )
            return upstreams_from_file(systemd_file, systemd_file)
        raise ResolvConfError(
            f"--upstream {path}: nameserver {loopback[0]} is a loopback stub (systemd-resolved, dnsmasq?), "
            f"and forwarding there would loop back here; {systemd_file} does not exist. "
            "Pass the real resolvers with --upstream ADDR[,ADDR], or --no-forward"
        )
    return tuple((s, DNS_PORT) for s in servers)
