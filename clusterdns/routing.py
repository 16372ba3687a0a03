"""Which names this server answers itself, and which go to the forwarder (DESIGN.md: forward beside the zone).

Names in the cluster zones are always answered here, NXDOMAIN included: they
never go upstream.  Reverse names go upstream unless the cluster owns them
(has records at the name), as CoreDNS's ``kubernetes`` plugin does with
``fallthrough in-addr.arpa ip6.arpa``.  Everything else is forwarded.
"""

from __future__ import annotations

from .settings import REVERSE_ZONES
from .zone import Zone


def goes_upstream(zone: Zone, name: str) -> bool:
    """``name`` (lower case, absolute) is not served by ``zone``: the forwarder answers it."""
    origin = zone.origin_for(name)
    if origin is None:
        return True
    return origin in REVERSE_ZONES and name != origin and zone.records(name) is None
