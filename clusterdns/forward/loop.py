"""Forwarding-loop detection at start, as CoreDNS's ``loop`` plugin does it.

A random name (``<random>.<n>.`` under each forwarded zone) is asked as
HINFO of each upstream in turn.  Nobody else ever asks it, so if the query
arrives at our own listener, that upstream forwards back to us: a loop, which
would spin every cache miss between the two servers until both fall over.
The forwarder answers a returning probe itself (an HINFO carrying
:data:`MARKER`) and never sends it on, so detecting it cannot spin either.

CoreDNS sends its probe through itself and counts returns; sending it to one
upstream at a time instead tells which upstream loops.
"""

from __future__ import annotations

import logging
import os
import random

from dnslib import QTYPE

from .forwarder import Forwarder
from .message import name_question
from .upstream import Upstream

log = logging.getLogger("clusterdns.forward")

PROBE_ENV = "CLUSTERDNS_LOOP_PROBE"  # the token the worker processes of one serve share (inherited)
MARKER = b"clusterdns-loop-probe"  # in the HINFO any of our processes answers a returning probe with


def launch_token(fresh: bool = False) -> str:
    """A random token for this ``serve`` and the workers it starts (they inherit the environment).

    ``fresh``: a new launch (the first process of a ``serve``), never one
    inherited from whatever started us; the extra workers take their parent's.

    With ``--workers`` the probe can come back to another process on the
    same port: every process of one launch knows every probe name, answers a
    returning one itself with :data:`MARKER`, and so the prober sees the loop
    in the reply whichever process got it.
    """
    token = "" if fresh else os.environ.get(PROBE_ENV, "")
    if not token.isdigit():
        token = str(random.SystemRandom().getrandbits(63))
        os.environ[PROBE_ENV] = token
    return token


def arm(forwarder: Forwarder) -> list[tuple[str, Upstream, str]]:
    """(probe name, upstream, zone) for each upstream of each forwarded zone; the forwarder learns the names.

    Call it before the listeners open, so no process of the launch forwards another's probe.
    """
    token = launch_token()
    groups = ([forwarder.default] if forwarder.default else []) + forwarder.stubs
    probes: list[tuple[str, Upstream, str]] = []
    for group in groups:
        for upstream in group.upstreams:
            name = f"{token}.{len(probes) + 1}." + ("" if group.zone == "." else group.zone)
            probes.append((name, upstream, group.zone))
    forwarder.probes.update(name for name, _, _ in probes)
    return probes


async def find_loop(forwarder: Forwarder, timeout: float | None = None) -> str | None:
    """A message naming the looping upstream, or None.  One probe per (zone, upstream), one at a time."""
    timeout = forwarder.settings.try_timeout if timeout is None else timeout
    for name, upstream, zone in arm(forwarder):
        reply, problem = await forwarder.check_now(upstream, name_question(name, QTYPE.HINFO), timeout)
        if reply is None and name not in forwarder.probes_seen:
            # Not a loop, but the user should hear now, not at the first SERVFAIL.
            log.warning("upstream %s (for %s) did not answer the start-up probe: %s. Names forwarded to it fail "
                        "until it answers; check the address, or pass --upstream with a resolver that works",
                        upstream.label, zone, problem)
        if name in forwarder.probes_seen or (reply is not None and MARKER in reply):
            return (
                f"forwarding loop detected: upstream {upstream.label} (for {zone}) sent our probe query "
                f"\"HINFO {name}\" back to this server. It forwards to us (a local stub such as "
                "systemd-resolved or dnsmasq, or our own address): pass --upstream with resolvers that do not "
                "forward here, or --no-forward"
            )
    return None
