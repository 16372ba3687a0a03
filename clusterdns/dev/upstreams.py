"""Where the laptop resolver sends names that are not the cluster's.

The resolvers the machine used before are captured by ``dev setup --apply``
and kept in its record; ``clusterdns dev`` forwards to those.  A resolv.conf
is read only when there is no record, and never trusted blindly: a server
that is our own listen address (a resolv.conf that now points back at us) is
dropped, since forwarding there would loop.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from ..forward.resolvconf import nameservers

# systemd-resolved keeps the real upstreams here; /etc/resolv.conf names only its stub.
RESOLVED_UPSTREAMS = "run/systemd/resolve/resolv.conf"
RESOLV_CONF = "etc/resolv.conf"


def points_at(address: str, listen: tuple[str, int]) -> bool:
    """Would a resolver at ``address`` (port 53) be our own listener?"""
    host, port = listen
    if port != 53:
        return False
    if host in ("0.0.0.0", "::"):
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    return address == host


def captured_upstreams(root: Path, listen: tuple[str, int]) -> list[str]:
    """``HOST:53`` for each resolver the machine uses now, as ``setup --apply`` records them.

    The stub 127.0.0.53 of systemd-resolved is kept as it is: it follows the
    network as a laptop moves, and it sends only our own zones back to us,
    which are never forwarded.
    """
    for relative in (RESOLV_CONF, RESOLVED_UPSTREAMS):
        try:
            text = (root / relative).read_text()
        except OSError:
            continue
        found = [a for a in nameservers(text) if not points_at(a, listen)]
        if found:
            return [f"[{a}]:53" if ":" in a else f"{a}:53" for a in found]
    return []


def dev_upstreams(explicit: list[str] | None, state_file: Path, resolv_conf: Path, listen: tuple[str, int]) -> tuple[list[str], str]:
    """(upstreams as HOST:PORT, where they came from) for ``clusterdns dev``.

    ``--upstream`` wins; then the setup record; then resolv.conf without our
    own address.  An empty list means forwarding is off.
    """
    if explicit is not None:
        return explicit, "--upstream"
    try:
        record = json.loads(state_file.read_text())
        if record.get("upstreams"):
            return list(record["upstreams"]), f"the setup record {state_file}"
    except (OSError, ValueError):
        pass
    try:
        found = [a for a in nameservers(resolv_conf.read_text()) if not points_at(a, listen)]
    except OSError:
        found = []
    return [f"[{a}]:53" if ":" in a else f"{a}:53" for a in found], str(resolv_conf)
