"""The TTL cache of forwarded answers, as CoreDNS's ``cache`` plugin keeps it.

Two bounded caches (cachetools' ``TLRUCache``: least recently used out first,
each entry expiring at its own time), one for successes and one for denials,
so a flood of random misspelt names cannot push out the names that resolve.

- A success lives as long as its smallest TTL, capped by ``cache_max_ttl``.
- A denial (NXDOMAIN, or NOERROR without answers) lives for the SOA's TTL or
  its MINIMUM field, whichever is smaller (RFC 2308 section 5), capped by
  ``denial_max_ttl``; a denial without an SOA is not cached (RFC 2308 says
  SHOULD NOT).
- Other rcodes (SERVFAIL, REFUSED) are never cached.

Each record's TTL is kept (capped) and counted down when served.  With
``serve_stale`` an entry is kept that much longer after it expires, to be
served with TTL 0 when every upstream fails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from cachetools import TLRUCache

from .message import Layout

NOERROR, NXDOMAIN = 0, 3
SUCCESS, DENIAL = "success", "denial"


@dataclass(frozen=True, slots=True)
class Entry:
    message: bytes  # without ID meaning and without OPT
    ttls: tuple[tuple[int, int], ...]  # (offset, capped TTL)
    rcode: int
    stored: float
    expires: float

    def age(self, now: float) -> int:
        return int(now - self.stored)


def entry_for(layout: Layout, now: float, max_ttl: int, denial_max_ttl: int) -> tuple[Entry, str | None]:
    """The entry for an upstream answer, and the cache it belongs in (None: not to be cached)."""
    kind: str | None = None
    if layout.rcode == NOERROR and layout.answers:
        kind, cap = SUCCESS, max_ttl
        lifetime = min((ttl for _, ttl in layout.ttls), default=0)
    elif layout.rcode in (NOERROR, NXDOMAIN) and layout.soa is not None:
        kind, cap = DENIAL, denial_max_ttl
        lifetime = min(layout.soa)
    else:
        cap, lifetime = max_ttl, 0
    lifetime = min(lifetime, cap)
    ttls = tuple((offset, min(ttl, cap if kind != DENIAL else lifetime)) for offset, ttl in layout.ttls)
    entry = Entry(layout.without_opt, ttls, layout.rcode, now, now + lifetime)
    return entry, kind if lifetime > 0 else None


class ForwardCache:
    def __init__(self, size: int, serve_stale: float = 0.0, clock: Callable[[], float] = time.monotonic):
        self.serve_stale = serve_stale
        self.clock = clock

        def until(key, entry: Entry, now: float) -> float:
            return entry.expires + serve_stale

        self.caches = {
            SUCCESS: TLRUCache(maxsize=size, ttu=until, timer=clock),
            DENIAL: TLRUCache(maxsize=size, ttu=until, timer=clock),
        }

    def get(self, key: bytes) -> tuple[Entry | None, bool]:
        """(entry, fresh): a fresh entry, or a stale one kept for serve-stale (fresh False), or (None, False)."""
        now = self.clock()
        for cache in self.caches.values():
            entry = cache.get(key)
            if entry is not None:
                return entry, now < entry.expires
        return None, False

    def put(self, key: bytes, entry: Entry, kind: str) -> None:
        other = DENIAL if kind == SUCCESS else SUCCESS
        self.caches[other].pop(key, None)  # a name that now resolves is no longer denied, and back
        self.caches[kind][key] = entry

    def counts(self) -> dict[str, int]:
        for cache in self.caches.values():
            cache.expire()
        return {kind: len(cache) for kind, cache in self.caches.items()}
