"""The forwarder: a query the zone does not serve in, its response out.

Per query: the fresh cache entry if there is one; otherwise one upstream
resolution per distinct question (concurrent identical questions wait on the
same one), sent to the stub whose zone is the most specific suffix of the
name, else to the default upstreams.  Upstreams are tried in policy order,
skipping those marked down, each for ``try_timeout``; past ``timeout`` in all,
or when every upstream failed, the answer is SERVFAIL (or a stale entry with
``serve_stale``).  Never more than ``max_concurrent`` queries wait at once:
the next gets REFUSED at once, as CoreDNS's ``max_concurrent`` does.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

from dnslib import QTYPE, RCODE, RD, RR, DNSRecord

from cachetools import LRUCache

from ..burstlog import BurstLog
from ..loadbalance import rotate, rotation_plan
from ..reasons import NO_REACHABLE_AUTHORITY, NOT_AUTHORITATIVE, OTHER
from ..wire import MAX_MESSAGE, fit
from .cache import Entry, ForwardCache, entry_for
from .message import ClientQuery, client_query, error_response, for_client, layout, lower_question, name_question
from .settings import ForwardSettings
from .upstream import Upstream

log = logging.getLogger("clusterdns.forward")

SERVFAIL, REFUSED = RCODE.SERVFAIL, RCODE.REFUSED
HIT, UPSTREAM, STALE, FAILED, REJECTED = "hit", "upstream", "stale", "failed", "rejected"  # how _lookup answered
MAX_CNAME_CHAIN = 8
MAX_IN_FLIGHT = 10_000  # the bound when max_concurrent is 0 ("no limit", as a Corefile may say)


@dataclass
class Group:
    """The upstreams for names at or under ``zone`` ("." for the default ones)."""

    zone: str
    upstreams: list[Upstream]
    turn: int = 0  # round_robin position


@dataclass(frozen=True, slots=True)
class Outcome:
    """A forwarded answer for the server: bytes to send, rcode, and how it was made."""

    response: bytes | None
    rcode: int
    cache_hit: bool | None  # None: no cache lookup (rejected, unparsable)


@dataclass
class _Stats:
    stale_served: int = 0
    rejected: int = 0
    upstream_queries: int = 0


class Forwarder:
    def __init__(self, settings: ForwardSettings, metrics=None, clock=time.monotonic):
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.loadbalance = False  # rotate A/AAAA records between deliveries (--loadbalance)
        self._turn = 0
        by_address: dict = {}

        def upstreams(addresses) -> list[Upstream]:
            return [
                by_address.setdefault(a, Upstream(a, settings.payload, settings.tcp_idle)) for a in addresses
            ]

        self.default = Group(".", upstreams(settings.upstreams)) if settings.upstreams else None
        stubs = sorted(settings.stubs, key=lambda s: -len(s.zone))  # most specific first
        self.stubs = [Group(s.zone, upstreams(s.upstreams)) for s in stubs]
        self.upstreams: list[Upstream] = list(by_address.values())
        self.cache = ForwardCache(settings.cache_size, settings.serve_stale, clock)
        self._in_flight: dict[bytes, asyncio.Task] = {}  # question → its one upstream resolution
        self.waiting = 0  # client queries waiting for an upstream
        self.stats = _Stats()
        self.burst = BurstLog(log, level=logging.WARNING)
        self.probes: set[str] = set()  # loop probe names (see loop.py)
        self.probes_seen: set[str] = set()  # those that came back to us
        self._random = random.Random()
        # question key → why every upstream failed, for the EDE of the SERVFAIL (bounded, popped when used)
        self._failures: LRUCache[bytes, str] = LRUCache(maxsize=1024)

    # ------------------------------------------------------------------ routing

    def group_for(self, name: str) -> Group | None:
        for group in self.stubs:
            if name == group.zone or name.endswith("." + group.zone):
                return group
        return self.default

    def _order(self, group: Group) -> list[Upstream]:
        upstreams = group.upstreams
        policy = self.settings.policy
        if policy == "random":
            upstreams = self._random.sample(upstreams, len(upstreams))
        elif policy == "round_robin":
            start = group.turn % len(upstreams)
            group.turn += 1
            upstreams = upstreams[start:] + upstreams[:start]
        healthy = [u for u in upstreams if u.healthy]
        # All down: health checking may be what is broken; try one anyway (CoreDNS does the same).
        return healthy or [self._random.choice(upstreams)]

    # ------------------------------------------------------------------ answering

    def answer_cached(self, data: bytes, udp: bool) -> Outcome | None:
        """The response from a fresh cache entry, at once, or None (then await :meth:`forward`)."""
        query = client_query(data, self.settings.payload)
        if query is None or query.name in self.probes:
            return None
        entry, fresh = self.cache.get(query.key)
        if entry is None or not fresh:
            return None
        return Outcome(self._deliver(entry, query, udp), entry.rcode, True)

    async def forward(self, data: bytes, udp: bool) -> Outcome:
        """The response to a client's query for a name outside the served zones."""
        query = client_query(data, self.settings.payload)
        if query is None:
            return Outcome(None, 0, None)  # the zone's parser took it; nothing sane to forward
        payload = self.settings.payload
        if query.name in self.probes:
            self.probes_seen.add(query.name)  # a loop probe of ours came back: answer it, never send it on
            return Outcome(probe_answer(query.data), RCODE.NOERROR, None)
        group = self.group_for(query.name)
        if group is None:  # only stubs configured, and none matches
            why = (NOT_AUTHORITATIVE, "outside the cluster zones and no forward zone matches")
            return Outcome(error_response(query, REFUSED, payload, why), REFUSED, None)
        entry, how = await self._lookup(query.key, group, query.question, query)
        if how == REJECTED:
            why = (OTHER, f"too many forwarded queries waiting (max_concurrent {self.settings.max_concurrent})")
            return Outcome(error_response(query, REFUSED, payload, why), REFUSED, None)
        if entry is None:
            why = (NO_REACHABLE_AUTHORITY, self._failures.get(query.key) or "no upstream answered")
            return Outcome(error_response(query, SERVFAIL, payload, why), SERVFAIL, False)
        return Outcome(self._deliver(entry, query, udp, stale=how == STALE), entry.rcode, how in (HIT, STALE))

    async def _lookup(self, key: bytes, group: Group, question: bytes, query: ClientQuery) -> tuple[Entry | None, str]:
        """(entry, how) for a question: from the cache, from upstream, stale, or (None, failed/rejected)."""
        entry, fresh = self.cache.get(key)
        if fresh:
            return entry, HIT
        stale = entry
        if self.waiting >= (self.settings.max_concurrent or MAX_IN_FLIGHT):
            self.stats.rejected += 1
            if self.metrics is not None:
                self.metrics.count_forward_reject()
            return None, REJECTED
        self.waiting += 1
        try:
            entry = await self._resolution(key, group, question, query)
        finally:
            self.waiting -= 1
        if entry is not None:
            return entry, UPSTREAM
        if stale is not None:
            self.stats.stale_served += 1
            return stale, STALE
        return None, FAILED

    def _deliver(self, entry: Entry, query: ClientQuery, udp: bool, stale: bool = False) -> bytes:
        age = None if stale else entry.age(self.clock())
        out = for_client(entry.message, entry.ttls, age, query, udp, self.settings.payload)
        if self.loadbalance:  # as CoreDNS's loadbalance, which turns forwarded answers too
            plan = rotation_plan(out)
            if plan is not None:
                self._turn += 1
                out = rotate(out, plan, self._turn)
        return out

    # ------------------------------------------------------------------ upstream

    async def _resolution(self, key: bytes, group: Group, question: bytes, query: ClientQuery) -> Entry | None:
        """The one in-flight resolution of ``key``, started if there is none (its owner's cancel spares it)."""
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._ask(group, question, query.do, query.cd, query.name, query.qtype))
            self._in_flight[key] = task
            task.add_done_callback(lambda _t: self._in_flight.pop(key, None))
        return await asyncio.shield(task)

    async def _ask(self, group: Group, question: bytes, do: bool, cd: bool, name: str, qtype: int) -> Entry | None:
        """Ask the group's upstreams in turn; the answer as an entry (cached if it may be), None if all failed."""
        settings = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.timeout
        tried = []
        failures: list[str] = []
        for upstream in self._order(group):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            tried.append(upstream.label)
            started = time.perf_counter()
            self.stats.upstream_queries += 1
            if self.metrics is not None:
                self.metrics.count_forward_request(upstream.label)
            try:
                reply, _ = await upstream.exchange(question, do, cd, min(settings.try_timeout, remaining))
                shape = layout(reply)
            except (OSError, asyncio.TimeoutError, ValueError) as exc:
                failures.append(f"{upstream.label}: {self._failed(upstream, exc, name, qtype)}")
                continue
            if self.metrics is not None:
                self.metrics.observe_forward_response(upstream.label, shape.rcode, time.perf_counter() - started)
            entry, kind = entry_for(shape, self.clock(), settings.cache_max_ttl, settings.denial_max_ttl)
            if kind is not None:
                self.cache.put(question_key(question, do, cd), entry, kind)
            return entry
        self.burst.report(
            ("all", group.zone),
            f"no upstream answered {name} {QTYPE.get(qtype)} (tried {', '.join(tried) or 'none'}; "
            f"the bound is {settings.timeout:g}s): answering SERVFAIL",
        )
        self._failures[question_key(question, do, cd)] = "no upstream answered: " + (
            "; ".join(failures) if failures else f"none tried within {settings.timeout:g}s"
        )
        return None

    def _failed(self, upstream: Upstream, exc: BaseException, name: str, qtype: int) -> str:
        """Log the failure (once per burst), start health-checking; the reason in words."""
        reason = "no reply" if isinstance(exc, asyncio.TimeoutError) else (str(exc) or type(exc).__name__)
        if isinstance(exc, asyncio.TimeoutError):
            reason = f"no reply within {self.settings.try_timeout:g}s"
        self.burst.report(
            ("upstream", upstream.label),
            f"upstream {upstream.label} failed for {name} {QTYPE.get(qtype)}: {reason}; "
            "skipped until its health check (. IN NS) answers",
        )
        if upstream.healthy:
            upstream.healthy = False
            upstream.checking = asyncio.ensure_future(self._health_check(upstream))
        return reason

    async def _health_check(self, upstream: Upstream) -> None:
        """Check a down upstream every ``health_check`` seconds until it answers."""
        while True:
            await asyncio.sleep(self.settings.health_check)
            if await upstream.check(self.settings.try_timeout):
                upstream.healthy = True
                upstream.checking = None
                log.info("upstream %s answers again", upstream.label)
                return
            if self.metrics is not None:
                self.metrics.count_forward_healthcheck_failure(upstream.label)

    # ------------------------------------------------------------------ ExternalName

    async def chase(self, partial: bytes, data: bytes, udp: bool) -> Outcome:
        """Complete a cluster answer ending in a CNAME to an outside name with that name's records upstream.

        A failure upstream leaves the CNAME alone, with the upstream's rcode
        (SERVFAIL when none answered).  The chain stops at 8 CNAMEs in all.
        """
        reply = DNSRecord.parse(partial)
        query = client_query(data, self.settings.payload)
        cnames = [rr for rr in reply.rr if rr.rtype == QTYPE.CNAME]
        target = str(cnames[-1].rdata.label).lower()
        qtype = reply.q.qtype
        group = self.group_for(target)
        upstream_rcode = SERVFAIL
        if query is not None and group is not None:
            question = name_question(target, qtype)
            entry, how = await self._lookup(question_key(question, query.do, query.cd), group, question, query)
            if how == REJECTED:
                upstream_rcode = REFUSED
            elif entry is not None:
                age = None if how == STALE else entry.age(self.clock())
                upstream = DNSRecord.parse(for_client(entry.message, entry.ttls, age, _as_query(question), False, 0))
                upstream_rcode = entry.rcode
                chain = len(cnames)
                for rr in upstream.rr:
                    if rr.rtype == QTYPE.CNAME:
                        chain += 1
                        if chain > MAX_CNAME_CHAIN:
                            break
                    reply.add_answer(rr)
                if upstream_rcode != RCODE.NOERROR or not upstream.rr:
                    reply.auth = list(upstream.auth)
        reply.header.rcode = upstream_rcode
        reply.header.ra = 1
        full = bytes(reply.pack())
        if query is not None and udp and len(full) > query.udp_limit:
            full = fit(reply, query.udp_limit)
        return Outcome(full, upstream_rcode, None)

    # ------------------------------------------------------------------ lifecycle

    async def check_now(self, upstream: Upstream, question: bytes, timeout: float) -> tuple[bytes | None, str]:
        """One direct exchange with ``upstream`` (the loop probe), bypassing cache and health: (reply, why none)."""
        try:
            reply, _ = await upstream.exchange(question, False, False, timeout)
            return reply, ""
        except asyncio.TimeoutError:
            return None, f"no reply within {timeout:g}s"
        except (OSError, ValueError) as exc:
            return None, str(exc) or type(exc).__name__

    def flush_logs(self) -> None:
        self.burst.flush()

    async def close(self) -> None:
        self.burst.flush(everything=True)
        tasks = [t for t in self._in_flight.values()] + [u.checking for u in self.upstreams if u.checking]
        for upstream in self.upstreams:
            upstream.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def probe_answer(data: bytes) -> bytes:
    """Our answer to a returning loop probe: an HINFO whose bytes carry loop.MARKER, seen by the prober."""
    reply = DNSRecord.parse(data).reply()
    reply.add_answer(RR(reply.q.qname, QTYPE.HINFO, ttl=0, rdata=RD(b"\x0aclusterdns\x15clusterdns-loop-probe")))
    return bytes(reply.pack())


def question_key(question: bytes, do: bool, cd: bool) -> bytes:
    """The cache key of a wire question (see :attr:`ClientQuery.key`)."""
    return lower_question(question) + bytes((do, cd))


def _as_query(question: bytes) -> ClientQuery:
    """A stand-in client query for re-reading a stored answer (ExternalName chase)."""
    data = b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + question
    return ClientQuery(data, 12 + len(question) - 4, 0, 1, "", False, False, False, MAX_MESSAGE)

