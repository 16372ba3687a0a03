"""Forwarding-loop detection at start, as CoreDNS's ``loop`` plugin does it.

A random name (``<random>.<random>.`` under each forwarded zone) is asked as
HINFO of each upstream in turn.  Nobody else ever asks it, so if the query
arrives at our own listener while an upstream has it, that upstream forwards
back to us: a loop, which would spin every cache miss between the two servers
until both fall over.  The forwarder answers the returning probe SERVFAIL at
once and never sends it on, so detecting it cannot spin either.

CoreDNS sends its probe through itself and counts returns; sending it to one
upstream at a time instead tells which upstream loops.
"""

from __future__ import annotations

import logging
import random

from dnslib import QTYPE

from .forwarder import Forwarder
from .message import name_question

log = logging.getLogger("clusterdns.forward")


def probe_name(zone: str, rng: random.Random | None = None) -> str:
    rng = rng or random.SystemRandom()
    labels = f"{rng.getrandbits(63)}.{rng.getrandbits(63)}."
    return labels if zone == "." else labels + zone


async def find_loop(forwarder: Forwarder, timeout: float | None = None) -> str | None:
    """A message naming the looping upstream, or None.  One probe name per (zone, upstream)."""
    timeout = forwarder.settings.try_timeout if timeout is None else timeout
    groups = ([forwarder.default] if forwarder.default else []) + forwarder.stubs
    sent: dict[str, tuple[str, str]] = {}
    for group in groups:
        for upstream in group.upstreams:
            name = probe_name(group.zone)
            forwarder.probes.add(name)
            sent[name] = (upstream.label, group.zone)
            await forwarder.check_now(upstream, name_question(name, QTYPE.HINFO), timeout)
            looped = [n for n in sent if n in forwarder.probes_seen]  # a slow earlier one counts too
            if looped:
                label, zone = sent[looped[0]]
                return (
                    f"forwarding loop detected: upstream {label} (for {zone}) sent our probe query "
                    f"\"HINFO {looped[0]}\" back to this server. It forwards to us (a local stub such as "
                    "systemd-resolved or dnsmasq, or our own address): pass --upstream with resolvers that do not "
                    "forward here, or --no-forward"
                )
    return None
