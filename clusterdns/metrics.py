"""Every Prometheus metric clusterdns exports, in one registry per server.

The DNS metrics keep CoreDNS's names, labels and buckets (``plugin/metrics/vars``
and ``plugin/cache/metrics.go``), so dashboards and alerts written for a
CoreDNS deployment keep working when clusterdns replaces it.  Metrics that have
no CoreDNS counterpart (the object store, the watch, the zone) are named
``clusterdns_*``.  ``docs/metrics.md`` lists them all.

A :class:`Metrics` owns its own :class:`CollectorRegistry`, never the process
default, so each server (and each test) gets a fresh set.  Components get the
``Metrics`` they report to as an argument.

Cost on the query path: prometheus_client's metric objects take a lock on
every update, which made the seven updates of one query cost ~14 us.  So the
per-query metrics (``coredns_dns_*`` and the cache counters) are plain numbers
in :class:`_QueryStats`, turned into samples only when scraped, and
:meth:`Metrics.observe_query` does one dict lookup keyed by its arguments and
then a few integer additions (~2 us).  The price: ``observe_query`` must be
called from one thread, the event loop's.  Every other method may be called
from any thread.
"""

from __future__ import annotations

import platform
import time
from bisect import bisect_left
from functools import partial
from typing import Callable, Final, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from . import __version__
from .objects import KINDS

# prometheus_client adds a ``<name>_created`` series next to every counter and
# histogram child.  CoreDNS exports none, no dashboard reads them, and they
# double the series count.  The switch is process-wide in prometheus_client,
# so it is flipped here, once, where every metric of the process is defined.
disable_created_metrics()

# The classic Prometheus text format, which generate_latest() writes.  Sent
# explicitly because prometheus_client's CONTENT_TYPE_LATEST moved to
# version=1.0.0, which older scrapers do not know.  CoreDNS sends this one too.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

# CoreDNS plugin.TimeBuckets = prometheus.ExponentialBuckets(0.00025, 2, 16):
# 0.25 ms doubling up to 8.192 s.  Doubling is exact in binary floating point,
# so these are the very values Go computes.
TIME_BUCKETS: Final = tuple(0.00025 * 2**i for i in range(16))
# CoreDNS's request/response size buckets, in bytes.
SIZE_BUCKETS: Final = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3)

# Label values with a fixed meaning.
PROTO_UDP: Final = "udp"
PROTO_TCP: Final = "tcp"
FAMILY_IPV4: Final = "1"  # CoreDNS's "family" label: 1 = IPv4, 2 = IPv6
FAMILY_IPV6: Final = "2"
PLUGIN_KUBERNETES: Final = "kubernetes"  # answered from the cluster zone
PLUGIN_CACHE: Final = "cache"  # answered from the response cache
CACHE_SUCCESS: Final = "success"
CACHE_DENIAL: Final = "denial"
OTHER: Final = "other"

# Query types CoreDNS reports by name (its plugin/metrics/vars); every
# other type is lumped into "other" so a client cannot grow the label set.
# Keyed by both type code and name so callers may pass either.
_QTYPE_CODES: Final = {
    "A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16,
    "AAAA": 28, "SRV": 33, "DS": 43, "RRSIG": 46, "NSEC": 47, "DNSKEY": 48,
    "NSEC3": 50, "HTTPS": 65, "IXFR": 251, "AXFR": 252, "ANY": 255,
}  # fmt: skip
_QTYPE_LABEL: Final[dict[int | str, str]] = {
    **{name: name for name in _QTYPE_CODES},
    **{code: name for name, code in _QTYPE_CODES.items()},
}
# Rcode names as CoreDNS writes them (miekg/dns RcodeToString); others "RCODE<n>".
_RCODE_NAMES: Final = (
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN",
    "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE", "RCODE11", "RCODE12", "RCODE13",
    "RCODE14", "RCODE15", "BADSIG", "BADKEY", "BADTIME", "BADMODE", "BADNAME",
    "BADALG", "BADTRUNC", "BADCOOKIE",
)  # fmt: skip
_RCODE_LABEL: Final[dict[int | str, str]] = {
    **{name: name for name in _RCODE_NAMES},
    **dict(enumerate(_RCODE_NAMES)),
}
# More distinct label combinations than this are still counted, but their
# children are looked up on every query instead of being remembered; it bounds
# the memory a caller passing unexpected values can make us hold.
_MAX_REMEMBERED: Final = 4096


def qtype_label(qtype: int | str) -> str:
    """The ``type`` label for a query type given as code or name: its name, or "other"."""
    return _QTYPE_LABEL.get(qtype, OTHER)


def rcode_label(rcode: int | str) -> str:
    """The ``rcode`` label for an rcode given as number, digits or name, spelt as CoreDNS does."""
    if isinstance(rcode, str) and rcode.isdigit():
        rcode = int(rcode)
    if rcode in _RCODE_LABEL:
        return _RCODE_LABEL[rcode]
    return f"RCODE{rcode}" if isinstance(rcode, int) else rcode


class _Count:
    """One counter child."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class _Buckets:
    """One histogram child: per-bucket (not cumulative) counts, the last one +Inf, and the sum."""

    __slots__ = ("counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0


class _QueryStats:
    """The per-query metrics as plain numbers; a prometheus_client collector.

    Written only by :meth:`Metrics.observe_query` on the event-loop thread.
    Each dict maps the label values that vary (``server`` and ``view`` are
    fixed per server) to the child's numbers.
    """

    def __init__(self, server: str, view: str) -> None:
        self.server = server
        self.view = view
        self.requests: dict[tuple[str, str, str, str], _Count] = {}  # zone, proto, family, type
        self.do_requests: dict[tuple[str], _Count] = {}  # zone
        self.responses: dict[tuple[str, str, str], _Count] = {}  # zone, rcode, plugin
        self.duration: dict[tuple[str, str], _Buckets] = {}  # zone, type
        self.request_size: dict[tuple[str, str], _Buckets] = {}  # zone, proto
        self.response_size: dict[tuple[str, str], _Buckets] = {}  # zone, proto
        self.cache_hits = {CACHE_SUCCESS: _Count(), CACHE_DENIAL: _Count()}  # by type
        self.cache_misses = _Count()
        self.cache_requests = _Count()

    def collect(self) -> Iterator[Metric]:
        # list(...): a scrape may run in another thread while queries add children.
        server, view = self.server, self.view

        def counters(name: str, help_: str, labels: list[str], children: dict) -> CounterMetricFamily:
            family = CounterMetricFamily(name, help_, labels=["server", *labels, "view"])
            for key, count in list(children.items()):
                family.add_metric([server, *key, view], count.n)
            return family

        def histograms(
            name: str, help_: str, labels: list[str], bounds: tuple, children: dict
        ) -> HistogramMetricFamily:
            family = HistogramMetricFamily(name, help_, labels=["server", *labels, "view"])
            edges = [floatToGoString(b) for b in bounds] + ["+Inf"]
            for key, child in list(children.items()):
                running, buckets = 0, []
                for edge, n in zip(edges, child.counts):
                    running += n
                    buckets.append((edge, running))
                family.add_metric([server, *key, view], buckets, child.sum)
            return family

        yield counters(
            "coredns_dns_requests_total",
            "DNS queries received, per zone, transport (proto), address family "
            "(1 = IPv4, 2 = IPv6) and query type (uncommon types as 'other').",
            ["zone", "proto", "family", "type"],
            self.requests,
        )
        yield counters(
            "coredns_dns_do_requests_total",
            "DNS queries with the DNSSEC OK (DO) bit set, per zone.",
            ["zone"],
            self.do_requests,
        )
        yield counters(
            "coredns_dns_responses_total",
            "DNS responses sent, per zone, rcode and what wrote the response "
            "(kubernetes, forward, cache, or empty for the server itself).",
            ["zone", "rcode", "plugin"],
            self.responses,
        )
        yield histograms(
            "coredns_dns_request_duration_seconds",
            "Time from reading a query to handing its response to the socket, in seconds.",
            ["zone", "type"],
            TIME_BUCKETS,
            self.duration,
        )
        yield histograms(
            "coredns_dns_request_size_bytes",
            "Size of each DNS query message in bytes, per zone and transport.",
            ["zone", "proto"],
            SIZE_BUCKETS,
            self.request_size,
        )
        yield histograms(
            "coredns_dns_response_size_bytes",
            "Size of each DNS response message in bytes, per zone and transport.",
            ["zone", "proto"],
            SIZE_BUCKETS,
            self.response_size,
        )
        # One response cache serves every zone, like a `cache` line in the `.`
        # server block of the stock Kubernetes Corefile: zones=".".
        yield counters(
            "coredns_cache_hits_total",
            "Queries answered from the response cache, by type (success or denial).",
            ["type", "zones"],
            {(t, "."): c for t, c in self.cache_hits.items()},
        )
        yield counters(
            "coredns_cache_misses_total",
            "Queries looked up in the response cache and not found there.",
            ["zones"],
            {(".",): self.cache_misses},
        )
        yield counters(
            "coredns_cache_requests_total",
            "Queries looked up in the response cache (hits plus misses).",
            ["zones"],
            {(".",): self.cache_requests},
        )


# What observe_query() calls for one combination of labels.
_Recorder = Callable[[float, int, int, bool], None]


class Metrics:
    """All metrics of one clusterdns server, registered in :attr:`registry`.

    ``server`` is CoreDNS's ``server`` label: the DNS listener as
    ``<scheme>://[<bind>]:<port>``, e.g. ``dns://:53``.  ``view`` is always
    empty in CoreDNS unless its *view* plugin is used; it is kept as a label
    so label matchers and ``by (...)`` clauses written for CoreDNS still match.
    """

    def __init__(
        self,
        server: str = "dns://:53",
        *,
        version: str | None = None,
        revision: str = "",
        view: str = "",
        process_metrics: bool = True,
    ) -> None:
        self.registry = CollectorRegistry()
        self.server = server
        self.view = view
        reg = self.registry
        if process_metrics:
            # process_cpu_seconds_total, process_resident_memory_bytes, open fds,
            # python_info, python_gc_*: what the Go client's defaults give CoreDNS.
            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)
            GCCollector(registry=reg)

        # --- CoreDNS: per query (plugin/metrics, plugin/cache) ------------
        self._stats = _QueryStats(server, view)
        reg.register(self._stats)
        self._recorders: dict[tuple, _Recorder] = {}

        # --- CoreDNS: the rest ---------------------------------------------
        self._build_info = Gauge(
            "coredns_build_info",
            "A metric with a constant '1' value labeled by version, revision, and goversion "
            "from which the server was built (goversion holds the Python version).",
            ["version", "revision", "goversion"],
            registry=reg,
        )
        self._build_info.labels(
            version or __version__, revision, f"python{platform.python_version()}"
        ).set(1)
        self._panics = Counter(
            "coredns_panics_total",
            "Unexpected exceptions caught while handling a query (CoreDNS counts panics here).",
            registry=reg,
        )
        self._cache_entries = Gauge(
            "coredns_cache_entries",
            "Responses held in the response cache, by type (success or denial).",
            ["server", "type", "zones", "view"],
            registry=reg,
        )
        for cache_type in (CACHE_SUCCESS, CACHE_DENIAL):
            self._cache_entries.labels(server, cache_type, ".", view).set(0)

        # --- CoreDNS: forward (plugin/forward/metrics.go) --------------------
        # Per forwarded query, not per cluster answer: prometheus_client's locks are affordable here.
        self._forward_requests = Counter(
            "coredns_forward_requests_total",
            "Queries sent to each upstream (tries included: a failover counts once per upstream tried).",
            ["to"],
            registry=reg,
        )
        self._forward_responses = Counter(
            "coredns_forward_responses_total",
            "Responses received from each upstream, per rcode.",
            ["to", "rcode"],
            registry=reg,
        )
        self._forward_duration = Histogram(
            "coredns_forward_request_duration_seconds",
            "Time from sending a query to an upstream to its response, per upstream and rcode.",
            ["to", "rcode"],
            buckets=TIME_BUCKETS,
            registry=reg,
        )
        self._forward_healthcheck_failures = Counter(
            "coredns_forward_healthcheck_failures_total",
            "Health checks (`. IN NS`) of a down upstream that got no response.",
            ["to"],
            registry=reg,
        )
        self._forward_rejects = Counter(
            "coredns_forward_max_concurrent_rejects_total",
            "Queries answered REFUSED because --max-concurrent forwarded queries were already in flight.",
            registry=reg,
        )

        # --- clusterdns ----------------------------------------------------
        self._objects = Gauge(
            "clusterdns_objects",
            "Objects in the cluster object store, per kind (Service, EndpointSlice, Pod, ...).",
            ["kind"],
            registry=reg,
        )
        for kind in KINDS:
            self._objects.labels(kind).set(0)
        self._zone_records = Gauge(
            "clusterdns_zone_records",
            "Resource records in the cluster zone (forward and reverse names).",
            registry=reg,
        )
        self._zone_serial = Gauge(
            "clusterdns_zone_serial",
            "SOA serial of the cluster zone; it changes only when a DNS-visible change is applied.",
            registry=reg,
        )
        self._watch_restarts = Counter(
            "clusterdns_watch_restarts_total",
            "Watch streams against the Kubernetes API that ended and were started again, "
            "per kind and reason (expired, error, timeout, closed).",
            ["kind", "reason"],
            registry=reg,
        )
        self._watch_relists = Counter(
            "clusterdns_watch_relists_total",
            "Full lists of a kind fetched from the Kubernetes API after the first one "
            "(a watch that could not resume, e.g. 410 Gone).",
            ["kind"],
            registry=reg,
        )
        self._last_sync = Gauge(
            "clusterdns_last_sync_timestamp_seconds",
            "Unix time at which the source last knew its copy of the kind was current "
            "(a list completed, or a watch event or bookmark arrived); "
            "sync age = time() - this.",
            ["kind"],
            registry=reg,
        )
        self._last_sync_at: dict[str, float] = {}
        self._manifest_errors = Counter(
            "clusterdns_manifest_errors_total",
            "Manifest documents rejected while loading or reloading manifest files.",
            registry=reg,
        )
        self._manifest_paths_missing = Gauge(
            "clusterdns_manifest_paths_missing",
            "Manifest paths named on the command line that are gone; their last good state is served "
            "and /ready reports 503 while this is above 0.",
            registry=reg,
        )
        # Created on first report: a server fed only by manifest files has no
        # API to reach, and a constant 0 would read as an outage.
        self._api_reachable: Gauge | None = None
        self._hosts_gauges: tuple[Gauge, Gauge] | None = None  # created with the first hosts entries

    # --- query path ----------------------------------------------------------

    def observe_query(
        self,
        proto: str,
        family: str,
        qtype: int | str,
        rcode: int | str,
        duration_s: float,
        request_size: int,
        response_size: int,
        zone: str,
        cache_hit: bool | None = None,
        *,
        plugin: str = PLUGIN_KUBERNETES,
        dnssec_ok: bool = False,
    ) -> None:
        """Count one answered query in every per-query metric.  Event-loop thread only.

        ``proto`` is ``"udp"`` or ``"tcp"``; ``family`` ``"1"`` (IPv4) or ``"2"``
        (IPv6); ``qtype`` and ``rcode`` as code or name.  ``zone`` is the zone
        the query name fell under (e.g. ``"cluster.local."``, ``"."`` for
        forwarded names, ``"dropped"`` for queries turned away unparsed) and
        must come from a small fixed set.
        ``cache_hit`` is None when the query did not go through the response
        cache.  A hit is reported with plugin "cache", as CoreDNS does, and
        counts as cache type "denial" for NXDOMAIN, "success" otherwise.
        Raises ValueError for a ``proto`` or ``family`` that cannot be.
        """
        key = (zone, proto, family, qtype, rcode, cache_hit, plugin)
        record = self._recorders.get(key)
        if record is None:
            record = self._recorder(*key)
            if len(self._recorders) < _MAX_REMEMBERED:
                self._recorders[key] = record
        record(duration_s, request_size, response_size, dnssec_ok)

    def query_observer(self, proto: str, family: str, zone: str) -> Callable[[int, int, bool, float, int, int], None]:
        """:meth:`observe_query` for one listener: ``(qtype, rcode, cache_hit, duration_s, request_size, response_size)``.

        The transport, family and zone labels are fixed, so a query costs one
        dict lookup and the recorder's additions (about half of observe_query).
        """
        recorders: dict[tuple[int, int, bool], _Recorder] = {}
        make = self._recorder

        def observe(qtype: int, rcode: int, cache_hit: bool, duration_s: float, request_size: int,
                    response_size: int) -> None:
            record = recorders.get((qtype, rcode, cache_hit))
            if record is None:
                record = make(zone, proto, family, qtype, rcode, cache_hit, PLUGIN_KUBERNETES)
                if len(recorders) < _MAX_REMEMBERED:
                    recorders[(qtype, rcode, cache_hit)] = record
            record(duration_s, request_size, response_size, False)

        return observe

    def _recorder(
        self,
        zone: str,
        proto: str,
        family: str,
        qtype: int | str,
        rcode: int | str,
        cache_hit: bool | None,
        plugin: str,
    ) -> _Recorder:
        """Check and normalise one combination of labels and find its children, once."""
        if proto not in (PROTO_UDP, PROTO_TCP):
            raise ValueError(f"proto must be 'udp' or 'tcp', not {proto!r}")
        if family not in (FAMILY_IPV4, FAMILY_IPV6):
            raise ValueError(f"family must be '1' (IPv4) or '2' (IPv6), not {family!r}")
        type_ = qtype_label(qtype)
        rcode_ = rcode_label(rcode)
        if cache_hit:
            plugin = PLUGIN_CACHE
        s = self._stats
        requests = s.requests.setdefault((zone, proto, family, type_), _Count())
        responses = s.responses.setdefault((zone, rcode_, plugin), _Count())
        do_requests = s.do_requests.setdefault((zone,), _Count())
        duration = s.duration.setdefault((zone, type_), _Buckets(TIME_BUCKETS))
        request_size_ = s.request_size.setdefault((zone, proto), _Buckets(SIZE_BUCKETS))
        response_size_ = s.response_size.setdefault((zone, proto), _Buckets(SIZE_BUCKETS))
        cache_requests = s.cache_requests
        if cache_hit is None:
            cache_outcome = None
        elif cache_hit:
            cache_outcome = s.cache_hits[CACHE_DENIAL if rcode_ == "NXDOMAIN" else CACHE_SUCCESS]
        else:
            cache_outcome = s.cache_misses
        time_bounds, size_bounds, bucket = TIME_BUCKETS, SIZE_BUCKETS, bisect_left

        # bisect_left finds the first bound >= value: Prometheus's "le" bucket.
        def record(duration_s: float, request_size: int, response_size: int, dnssec_ok: bool) -> None:
            requests.n += 1
            responses.n += 1
            duration.counts[bucket(time_bounds, duration_s)] += 1
            duration.sum += duration_s
            request_size_.counts[bucket(size_bounds, request_size)] += 1
            request_size_.sum += request_size
            response_size_.counts[bucket(size_bounds, response_size)] += 1
            response_size_.sum += response_size
            if cache_outcome is not None:
                cache_requests.n += 1
                cache_outcome.n += 1
            if dnssec_ok:
                do_requests.n += 1

        return record

    def count_panic(self) -> None:
        """An unexpected exception escaped query handling (and was caught)."""
        self._panics.inc()

    def set_cache_entries(self, count: int, cache_type: str = CACHE_SUCCESS) -> None:
        """The response cache now holds ``count`` entries of ``cache_type`` ("success" or "denial")."""
        if cache_type not in (CACHE_SUCCESS, CACHE_DENIAL):
            raise ValueError(f"cache type must be 'success' or 'denial', not {cache_type!r}")
        self._cache_entries.labels(self.server, cache_type, ".", self.view).set(count)

    # --- forwarding ------------------------------------------------------------

    def count_forward_request(self, to: str) -> None:
        self._forward_requests.labels(to).inc()

    def observe_forward_response(self, to: str, rcode: int | str, duration_s: float) -> None:
        rcode_ = rcode_label(rcode)
        self._forward_responses.labels(to, rcode_).inc()
        self._forward_duration.labels(to, rcode_).observe(duration_s)

    def count_forward_healthcheck_failure(self, to: str) -> None:
        self._forward_healthcheck_failures.labels(to).inc()

    def count_forward_reject(self) -> None:
        self._forward_rejects.inc()

    # --- cluster, zone and sources -------------------------------------------

    def read_live(
        self,
        objects: Callable[[str], int],
        records: Callable[[], int],
        serial: Callable[[], int],
        cache_entries: Callable[[str], int],
    ) -> None:
        """Read the state gauges from these functions each time /metrics is scraped.

        No refresher pushes them, so a scrape never sees a value seconds old.
        ``objects(kind)`` counts the store's objects, ``cache_entries(type)`` the
        response cache's entries of "success" or "denial".  The functions run on
        the scraping thread, the event loop's (they only read sizes).
        """
        for kind in KINDS:
            self._objects.labels(kind).set_function(partial(objects, kind))
        self._zone_records.set_function(records)
        self._zone_serial.set_function(serial)
        for cache_type in (CACHE_SUCCESS, CACHE_DENIAL):
            child = self._cache_entries.labels(self.server, cache_type, ".", self.view)
            child.set_function(partial(cache_entries, cache_type))

    def set_objects(self, kind: str, count: int) -> None:
        """The object store now holds ``count`` objects of ``kind``."""
        self._objects.labels(kind).set(count)

    def set_zone_records(self, count: int) -> None:
        self._zone_records.set(count)

    def set_zone_serial(self, serial: int) -> None:
        self._zone_serial.set(serial)

    def count_watch_restart(self, kind: str, reason: str) -> None:
        """A watch stream of ``kind`` ended and is being started again.

        ``reason`` should be one of a few fixed words: ``expired`` (410 Gone),
        ``error`` (connection or HTTP error), ``timeout`` (no event or bookmark
        in time), ``closed`` (the server ended the stream normally).
        """
        self._watch_restarts.labels(kind, reason).inc()

    def count_watch_relist(self, kind: str) -> None:
        """``kind`` was listed again from scratch (not counting the first list)."""
        self._watch_relists.labels(kind).inc()

    def mark_synced(self, kind: str, at: float | None = None) -> None:
        """The source's copy of ``kind`` is known current as of ``at`` (default: now)."""
        at = time.time() if at is None else at
        self._last_sync_at[kind] = at
        self._last_sync.labels(kind).set(at)

    def sync_age(self, kind: str, now: float | None = None) -> float | None:
        """Seconds since ``kind`` was last known current; None if it never was."""
        at = self._last_sync_at.get(kind)
        if at is None:
            return None
        return (time.time() if now is None else now) - at

    def set_api_reachable(self, reachable: bool) -> None:
        """Whether the last request to the Kubernetes API got an HTTP answer."""
        if self._api_reachable is None:
            self._api_reachable = Gauge(
                "clusterdns_api_reachable",
                "1 if the last request to the Kubernetes API got an HTTP response, 0 if it "
                "failed to connect or timed out. Absent when no API source is configured.",
                registry=self.registry,
            )
        self._api_reachable.set(1 if reachable else 0)

    def watch_hosts(self, entries: Callable[[], float], reloaded_at: Callable[[], float]) -> None:
        """CoreDNS's hosts plugin gauges, read at each scrape (only with --hosts; a reload re-points them)."""
        if self._hosts_gauges is None:
            self._hosts_gauges = (
                Gauge("coredns_hosts_entries", "The combined number of entries in hosts files and inline entries.",
                      registry=self.registry),
                Gauge("coredns_hosts_reload_timestamp_seconds", "The timestamp of the last reload of a hosts file.",
                      registry=self.registry),
            )
        self._hosts_gauges[0].set_function(entries)
        self._hosts_gauges[1].set_function(reloaded_at)

    def count_manifest_error(self, count: int = 1) -> None:
        """``count`` manifest documents were rejected."""
        self._manifest_errors.inc(count)

    def set_manifest_paths_missing(self, count: int) -> None:
        """``count`` of the named manifest paths are gone."""
        self._manifest_paths_missing.set(count)

    # --- exposition ------------------------------------------------------------

    def exposition(self) -> bytes:
        """Everything in :attr:`registry`, in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
