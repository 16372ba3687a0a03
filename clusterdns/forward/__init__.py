"""Forwarding of names outside the served zones: upstreams, transport, TTL cache, loop probe.

It sits beside the cluster zone, not inside it (DESIGN.md): the server asks the
zone first, and only a name the zone does not serve comes here.  The pieces:

- :mod:`.settings` — :class:`ForwardSettings`, the one value every option maps onto;
- :mod:`.resolvconf` — the nameservers of a resolv.conf, read as glibc does;
- :mod:`.message` — small wire-format helpers (TTL offsets, OPT, questions);
- :mod:`.upstream` — one upstream server: UDP, TCP on truncation, pooled TCP, health;
- :mod:`.cache` — the TTL cache of forwarded answers (cachetools), success and denial;
- :mod:`.forwarder` — :class:`Forwarder`: routing to stubs, de-duplication, failover, limits;
- :mod:`.loop` — the start-up probe that finds forwarding loops (CoreDNS's ``loop``).
"""

from .forwarder import Forwarder
from .settings import ForwardSettings, Stub, parse_addresses, parse_stub

__all__ = ["Forwarder", "ForwardSettings", "Stub", "parse_addresses", "parse_stub"]
