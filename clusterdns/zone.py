"""The DNS view: record sets by owner name, and the names that exist without records.

Each *owner* (a service, a namespace, a pod, the zone apex) contributes a
:data:`RecordSets` value; :meth:`Zone.replace` swaps one owner's contribution
and touches only its names.  Two owners may share a name (two services whose
endpoints reverse-map to the same PTR name): their record sets are merged.

Empty non-terminals (``svc.cluster.local.``, ``default.svc.cluster.local.``,
``_tcp.web.default.svc.cluster.local.``) exist because a name below them
does: a counter per ancestor says how many names sit underneath it, so
"NXDOMAIN or NODATA?" is one dict lookup.

Updates run on the event loop, between queries; :meth:`commit` bumps the SOA
serial once per batch and tells listeners (the wire cache) which names
changed, so they drop only the answers that read those names.  A query
therefore never sees half an update.

Reading is plain lookups; an answer that needs to know which names it read
(to be cached and dropped when one changes) reads through
:class:`~clusterdns.answer.Reader`, which remembers them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Callable, Hashable, Iterable

from dnslib import AAAA, CNAME, NS, PTR, QTYPE, RD, SRV, TXT, A

from .names import dashed, pod_name
from .settings import Settings

if TYPE_CHECKING:
    from .reasons import Catalog

# A record's data is a plain value, not a dnslib object (a tenth of the memory):
# an address or a name as a str, an SRV as (priority, weight, port, target).
Value = Hashable
Sets = Mapping[int, tuple[Value, ...]]  # qtype → values (a dict, or a OneKey)
RecordSets = Mapping[str, Sets]  # owner name → its record sets (a dict, or a OneKey)
Owner = Hashable

_RDATA = {
    QTYPE.A: A,
    QTYPE.AAAA: AAAA,
    QTYPE.PTR: PTR,
    QTYPE.CNAME: CNAME,
    QTYPE.NS: NS,
    QTYPE.TXT: TXT,
    QTYPE.SRV: lambda v: SRV(priority=v[0], weight=v[1], port=v[2], target=v[3]),
}


class OneKey(Mapping):
    """A read-only mapping of one key: the record sets of a name with one record type.

    48 bytes where a one-key dict takes 184; at 150,000 pods and 100,000
    endpoints that is most of the zone's memory.
    """

    __slots__ = ("_key", "_value")

    def __init__(self, key, value):
        self._key = key
        self._value = value

    def __getitem__(self, key):
        if key == self._key:
            return self._value
        raise KeyError(key)

    def get(self, key, default=None):
        return self._value if key == self._key else default

    def __contains__(self, key) -> bool:
        return key == self._key

    def __iter__(self):
        yield self._key

    def __len__(self) -> int:
        return 1

    def items(self):
        return ((self._key, self._value),)

    def __repr__(self) -> str:
        return f"{{{self._key!r}: {self._value!r}}}"


class OneRecord(OneKey):
    """The record sets of a name with one record (a service's address, an endpoint's, a PTR: most names).

    The value is kept bare and its 1-tuple made when read (answers are
    encoded once and cached as bytes, so reads are rare): 64 bytes where a
    OneKey and the tuple took 128.
    """

    __slots__ = ()

    def __getitem__(self, key):
        if key == self._key:
            return (self._value,)
        raise KeyError(key)

    def get(self, key, default=None):
        return (self._value,) if key == self._key else default

    def items(self):
        return ((self._key, (self._value,)),)

    def __repr__(self) -> str:
        return f"{{{self._key!r}: ({self._value!r},)}}"


class TwoKeys(Mapping):
    """The record sets of a name with two record types (a service's address and its SRV): 64 bytes
    where a two-key dict takes 184."""

    __slots__ = ("_k1", "_v1", "_k2", "_v2")

    def __init__(self, k1, v1, k2, v2):
        self._k1, self._v1, self._k2, self._v2 = k1, v1, k2, v2

    def __getitem__(self, key):
        if key == self._k1:
            return self._v1
        if key == self._k2:
            return self._v2
        raise KeyError(key)

    def get(self, key, default=None):
        return self._v1 if key == self._k1 else self._v2 if key == self._k2 else default

    def __contains__(self, key) -> bool:
        return key == self._k1 or key == self._k2

    def __iter__(self):
        yield self._k1
        yield self._k2

    def __len__(self) -> int:
        return 2

    def items(self):
        return ((self._k1, self._v1), (self._k2, self._v2))

    def __repr__(self) -> str:
        return f"{{{self._k1!r}: {self._v1!r}, {self._k2!r}: {self._v2!r}}}"


def compact_sets(sets: Sets) -> Sets:
    """Record sets as the zone keeps them: a :class:`OneRecord` for one record, a :class:`OneKey` for one
    type, :class:`TwoKeys` for two."""
    if isinstance(sets, (OneKey, TwoKeys)):
        return sets
    if len(sets) == 1:
        ((qtype, values),) = sets.items()
        return OneRecord(qtype, values[0]) if len(values) == 1 else OneKey(qtype, values)
    if len(sets) == 2:
        (k1, v1), (k2, v2) = sets.items()
        return TwoKeys(k1, v1, k2, v2)
    return sets


# More pod addresses than this coming or going in one batch (a first list, a relist) make the commit
# report "everything changed" (the answer caches start afresh) instead of each pod name: naming
# 150,000 of them held 20 MB until the commit, for caches that were empty anyway.
POD_CHANGES_NAMED = 10_000


class PodAddresses:
    """Which namespaces have a pod at each address: all a ``--pods verified`` answer needs.

    CoreDNS answers ``a-b-c-d.<ns>.pod.<zone>`` by looking the address up in
    its pod index at query time; so does :func:`clusterdns.answer.lookup`,
    rather than the zone holding a name and a record set per pod (at 150,000
    pods that was most of the memory).  One pod at an address (almost every
    address) is stored as its namespace alone; several (hostNetwork pods share
    their node's) as a Counter of namespaces, so one leaving keeps the others.
    """

    __slots__ = ("_by_ip",)

    def __init__(self) -> None:
        self._by_ip: dict[str, str | Counter[str]] = {}

    def has(self, ip: str, namespace: str) -> bool:
        held = self._by_ip.get(ip)
        return held == namespace if isinstance(held, str) else held is not None and namespace in held

    def __len__(self) -> int:
        return len(self._by_ip)

    def add(self, ip: str, namespace: str) -> bool:
        """One more pod at ``ip`` in ``namespace``; True if it is the first there."""
        held = self._by_ip.get(ip)
        if held is None:
            self._by_ip[ip] = namespace
            return True
        if isinstance(held, str):
            held = self._by_ip[ip] = Counter((held,))
        held[namespace] += 1
        return held[namespace] == 1

    def remove(self, ip: str, namespace: str) -> bool:
        """One pod fewer at ``ip`` in ``namespace``; True if it was the last there."""
        held = self._by_ip.get(ip)
        if held is None or isinstance(held, str):
            if held == namespace:
                del self._by_ip[ip]
                return True
            return False
        if namespace not in held:
            return False
        held[namespace] -= 1
        if held[namespace] > 0:
            return False
        del held[namespace]
        if len(held) == 1 and sum(held.values()) == 1:
            (self._by_ip[ip],) = held  # back to the plain form
        return True


def to_rdata(qtype: int, value: Value) -> RD:
    """The dnslib record data for a stored value (built when an answer is encoded, then cached as bytes)."""
    return value if isinstance(value, RD) else _RDATA[qtype](value)


_FIRST = object()  # in Zone._shared: the contribution of the owner that held the name first


class Zone:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.serial = int(time.time())
        self._by_owner: dict[Owner, tuple[str, ...]] = {}  # owner → the names it contributes to
        # Names several owners contribute to (two services' endpoints at one address): what each
        # contributes, the first under _FIRST.  A name of one owner (almost every name) needs no
        # entry: its records are that owner's, and _by_owner says whose.
        self._shared: dict[str, dict[Owner, Sets]] = {}
        self._records: dict[str, Sets] = {}  # merged view, read by queries
        self._below: Counter[str] = Counter()  # name → how many names exist under it
        self.record_count = 0  # kept up to date as names merge and withdraw
        self.pods = PodAddresses()  # --pods verified: pod addresses by namespace, not zone names
        self._pods_moved = 0  # pod addresses that came or went since the last commit
        self._dirty = False
        self._touched: set[str] = set()  # names whose answers may differ since the last commit
        # Called with the names that changed, or None for "everything".
        self.listeners: list[Callable[[Iterable[str] | None], None]] = []
        # False until the sources have delivered a full first state: until then a
        # miss may only mean "not loaded yet", so answers must not deny names.
        self.complete = True
        self.incomplete_reason = "not synced with the Kubernetes API yet"  # the words of its SERVFAIL
        # The facts explanations read (reasons.Catalog), when --explain is on; set by the owner.
        self.catalog: Catalog | None = None
        # Name → why it has no address, in words (clusterdns dev: a Service with no external address).
        self.notes: dict[str, str] = {}

    # ------------------------------------------------------------------ reading

    def records(self, name: str) -> Sets | None:
        """Record sets at ``name`` (lower case, absolute), or None if it owns none."""
        return self._records.get(name)

    def exists(self, name: str) -> bool:
        return name in self._records or name in self._below

    def has_pod(self, ip: str, namespace: str) -> bool:
        """Is there a pod at ``ip`` (canonical text) in ``namespace``?  Kept only with --pods verified."""
        return self.pods.has(ip, namespace)

    def read(self, key: str) -> None:
        """A fact other than a name was read (see :class:`~clusterdns.answer.Reader`); the zone itself keeps no list."""

    def origin_for(self, name: str) -> str | None:
        """The zone we are authoritative for that holds ``name``, if any."""
        best = None
        for origin in self.settings.zones:
            if (name == origin or name.endswith("." + origin)) and (best is None or len(origin) > len(best)):
                best = origin
        return best

    def names(self) -> list[str]:
        return sorted(self._records)

    # ------------------------------------------------------------------ writing

    def replace(self, owner: Owner, records: RecordSets) -> None:
        """Make ``records`` the whole contribution of ``owner`` (empty: remove it)."""
        old = {name: self._contribution(owner, name) for name in self._by_owner.get(owner, ())}
        records = {name: compact_sets(sets) for name, sets in records.items()}
        if old == records:
            return
        if records:
            self._by_owner[owner] = tuple(records)
        else:
            self._by_owner.pop(owner, None)
        for name in old.keys() - records.keys():
            self._withdraw(owner, name)
        for name, sets in records.items():
            if old.get(name) != sets:
                self._contribute(owner, name, sets, name in old)
        self._dirty = True

    def move_pod(self, namespace: str, before: Iterable[str], after: Iterable[str]) -> None:
        """A pod in ``namespace`` answered for the addresses ``before`` and now for ``after`` (--pods verified).

        The pod names whose answers change are reported at the next commit, as
        a record change is, so the answer cache drops exactly those.
        """
        before, after = set(before), set(after)
        pods = self.pods
        changed = [ip for ip in before - after if pods.remove(ip, namespace)]
        changed += [ip for ip in after - before if pods.add(ip, namespace)]
        if not changed:
            return
        self._dirty = True
        self._pods_moved += len(changed)
        if self._pods_moved <= POD_CHANGES_NAMED:
            self.touch(pod_name(dashed(ip), namespace, self.settings.zone) for ip in changed)

    def touch(self, names: Iterable[str]) -> None:
        """Mark ``names`` changed without a record change (facts the reasons read): the next commit reports them."""
        self._touched.update(names)
        self._dirty = True

    def set_complete(self, complete: bool) -> None:
        if complete != self.complete:
            self.complete = complete
            for listener in self.listeners:
                listener(None)

    def commit(self) -> bool:
        """End a batch: bump the serial and notify listeners if anything changed."""
        if not self._dirty:
            return False
        self._dirty = False
        # Serial: seconds since the epoch like CoreDNS, but never backwards and
        # never the same twice, so secondaries and caches see every change.
        self.serial = max(self.serial + 1, int(time.time()))
        # The apex answers carry the serial: they change with every commit.
        changed: set[str] | None = self._touched | set(self.settings.zones)
        if self._pods_moved > POD_CHANGES_NAMED:
            changed = None  # every answer may have changed
        self._touched, self._pods_moved = set(), 0
        for listener in self.listeners:
            listener(changed)
        return True

    def _contribution(self, owner: Owner, name: str) -> Sets:
        """What ``owner`` contributes at ``name`` (which it is one of the owners of)."""
        shared = self._shared.get(name)
        if shared is None:
            return self._records[name]
        return shared[owner] if owner in shared else shared[_FIRST]

    def _contribute(self, owner: Owner, name: str, sets: Sets, had: bool) -> None:
        """``owner`` contributes ``sets`` at ``name``; ``had``: it contributed something there before."""
        shared = self._shared.get(name)
        if shared is not None:
            # An owner not listed by name that had the name is the first one.
            shared[owner if owner in shared or not had else _FIRST] = sets
            self._merge(name, shared)
        elif had:
            self._set_records(name, sets)
        elif name in self._records:  # another owner's name: now shared
            shared = self._shared[name] = {_FIRST: self._records[name], owner: sets}
            self._merge(name, shared)
        else:
            self._count_ancestors(name, +1)
            self._set_records(name, sets)

    def _withdraw(self, owner: Owner, name: str) -> None:
        shared = self._shared.get(name)
        if shared is None:
            self._set_records(name, None)
            self._count_ancestors(name, -1)
            return
        if owner in shared:
            del shared[owner]
        else:  # the first owner leaves: another takes its place
            other = next(o for o in shared if o is not _FIRST)
            shared[_FIRST] = shared.pop(other)
        if len(shared) == 1:
            del self._shared[name]
            self._set_records(name, shared[_FIRST])
        else:
            self._merge(name, shared)

    def _set_records(self, name: str, sets: Sets | None) -> None:
        self._touched.add(name)
        old = self._records.pop(name, None)
        if old:
            self.record_count -= sum(map(len, old.values()))
        if sets is not None:
            self._records[name] = sets
            self.record_count += sum(map(len, sets.values()))

    def _merge(self, name: str, by_owner: dict[Owner, Sets]) -> None:
        merged: dict[int, list[Value]] = {}
        for sets in sorted(by_owner.values(), key=repr):  # the same order whoever came first
            for qtype, rds in sets.items():
                bucket = merged.setdefault(qtype, [])
                bucket.extend(rd for rd in rds if rd not in bucket)
        self._set_records(name, {qtype: tuple(rds) for qtype, rds in merged.items()})

    def _count_ancestors(self, name: str, delta: int) -> None:
        origin = self.origin_for(name)
        if origin is None:
            return
        while name != origin:
            name = name.split(".", 1)[1]
            self._below[name] += delta
            if self._below[name] <= 0:
                del self._below[name]
                self._touched.add(name)  # no longer an empty non-terminal
            elif self._below[name] == delta:
                self._touched.add(name)  # newly one
