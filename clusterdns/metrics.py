"""Every Prometheus metric clusterdns exports, in one registry per server.

The DNS metrics keep CoreDNS's names, labels and buckets (``plugin/metrics/vars``
and ``plugin/cache/metrics.go``), so dashboards and alerts written for a
CoreDNS deployment keep working when clusterdns replaces it.  Metrics that have
no CoreDNS counterpart (the object store, the watch, the zone) are named
``clusterdns_*``.  ``docs/metrics.md`` lists them all.

A :class:`Metrics` owns its own :class:`CollectorRegistry`, never the process
default, so each server (and each test) gets a fresh set.  Components get the
``Metrics`` they report to as an argument.

Cost on the query path: :meth:`Metrics.observe_query` does one dict lookup
keyed by its label arguments and then calls pre-resolved metric children.
Label children are resolved (and label values checked and normalised) only the
first time a combination is seen.
"""

from __future__ import annotations

import platform
import socket
import time
from importlib import metadata
from typing import Callable, Final

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
ZONE_DROPPED: Final = "dropped"  # CoreDNS's zone for queries turned away before parsing
PLUGIN_KUBERNETES: Final = "kubernetes"  # answered from the cluster zone
PLUGIN_FORWARD: Final = "forward"  # answered by an upstream resolver
PLUGIN_CACHE: Final = "cache"  # answered from the response cache
PLUGIN_SERVER: Final = ""  # written by the server itself (FORMERR, REFUSED, SERVFAIL on error)
CACHE_SUCCESS: Final = "success"
CACHE_DENIAL: Final = "denial"
OTHER: Final = "other"

# Query types CoreDNS reports by name (plugin/metrics/vars/monitor.go); every
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
    """The ``rcode`` label for an rcode given as number or name, spelt as CoreDNS does."""
    if rcode in _RCODE_LABEL:
        return _RCODE_LABEL[rcode]
    if isinstance(rcode, int):
        return f"RCODE{rcode}"
    raise ValueError(f"unknown rcode {rcode!r}")


def family_label(address_family: int) -> str:
    """The ``family`` label for a socket's address family (socket.AF_INET / AF_INET6)."""
    if address_family == socket.AF_INET:
        return FAMILY_IPV4
    if address_family == socket.AF_INET6:
        return FAMILY_IPV6
    raise ValueError(f"not an IP address family: {address_family!r}")


def _package_version() -> str:
    try:
        return metadata.version("clusterdns")
    except metadata.PackageNotFoundError:  # running from a checkout that is not installed
        return "unknown"


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

        # --- CoreDNS: plugin/metrics -------------------------------------
        self._build_info = Gauge(
            "coredns_build_info",
            "A metric with a constant '1' value labeled by version, revision, and goversion "
            "from which the server was built (goversion holds the Python version).",
            ["version", "revision", "goversion"],
            registry=reg,
        )
        self._build_info.labels(
            version or _package_version(), revision, f"python{platform.python_version()}"
        ).set(1)
        self._panics = Counter(
            "coredns_panics_total",
            "Unexpected exceptions caught while handling a query (CoreDNS counts panics here).",
            registry=reg,
        )
        self._requests = Counter(
            "coredns_dns_requests_total",
            "DNS queries received, per zone, transport (proto), address family "
            "(1 = IPv4, 2 = IPv6) and query type (uncommon types as 'other').",
            ["server", "zone", "view", "proto", "family", "type"],
            registry=reg,
        )
        self._do_requests = Counter(
            "coredns_dns_do_requests_total",
            "DNS queries with the DNSSEC OK (DO) bit set, per zone.",
            ["server", "zone", "view"],
            registry=reg,
        )
        self._responses = Counter(
            "coredns_dns_responses_total",
            "DNS responses sent, per zone, rcode and what wrote the response "
            "(kubernetes, forward, cache, or empty for the server itself).",
            ["server", "zone", "view", "rcode", "plugin"],
            registry=reg,
        )
        self._duration = Histogram(
            "coredns_dns_request_duration_seconds",
            "Time from reading a query to handing its response to the socket, in seconds.",
            ["server", "zone", "view", "type"],
            buckets=TIME_BUCKETS,
            registry=reg,
        )
        self._request_size = Histogram(
            "coredns_dns_request_size_bytes",
            "Size of each DNS query message in bytes, per zone and transport.",
            ["server", "zone", "view", "proto"],
            buckets=SIZE_BUCKETS,
            registry=reg,
        )
        self._response_size = Histogram(
            "coredns_dns_response_size_bytes",
            "Size of each DNS response message in bytes, per zone and transport.",
            ["server", "zone", "view", "proto"],
            buckets=SIZE_BUCKETS,
            registry=reg,
        )

        # --- CoreDNS: plugin/cache ---------------------------------------
        # One response cache serves every zone, like a `cache` line in the
        # `.` server block of the stock Kubernetes Corefile: zones=".".
        cache_labels = (server, ".", view)
        self._cache_entries = Gauge(
            "coredns_cache_entries",
            "Responses held in the response cache, by type (success or denial).",
            ["server", "type", "zones", "view"],
            registry=reg,
        )
        self._cache_hits = Counter(
            "coredns_cache_hits_total",
            "Queries answered from the response cache, by type (success or denial).",
            ["server", "type", "zones", "view"],
            registry=reg,
        )
        self._cache_misses = Counter(
            "coredns_cache_misses_total",
            "Queries looked up in the response cache and not found there.",
            ["server", "zones", "view"],
            registry=reg,
        )
        self._cache_requests = Counter(
            "coredns_cache_requests_total",
            "Queries looked up in the response cache (hits plus misses).",
            ["server", "zones", "view"],
            registry=reg,
        )
        self._cache_entries_by_type = {
            t: self._cache_entries.labels(server, t, ".", view) for t in (CACHE_SUCCESS, CACHE_DENIAL)
        }
        self._cache_hit_by_type = {
            t: self._cache_hits.labels(server, t, ".", view).inc for t in (CACHE_SUCCESS, CACHE_DENIAL)
        }
        self._cache_miss = self._cache_misses.labels(*cache_labels).inc
        self._cache_request = self._cache_requests.labels(*cache_labels).inc
        for child in self._cache_entries_by_type.values():
            child.set(0)

        # --- clusterdns ----------------------------------------------------
        self._objects = Gauge(
            "clusterdns_objects",
            "Objects in the cluster object store, per kind (Service, EndpointSlice, Pod, ...).",
            ["kind"],
            registry=reg,
        )
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
        self._manifest_errors = Counter(
            "clusterdns_manifest_errors_total",
            "Manifest documents rejected while loading or reloading manifest files.",
            registry=reg,
        )
        # Created on first report: a server fed only by manifest files has no
        # API to reach, and a constant 0 would read as an outage.
        self._api_reachable: Gauge | None = None

        for kind in KINDS:
            self._objects.labels(kind).set(0)
        self._last_sync_at: dict[str, float] = {}
        self._recorders: dict[tuple, _Recorder] = {}

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
        """Count one answered query in every per-query metric.

        ``proto`` is ``"udp"`` or ``"tcp"``; ``family`` ``"1"`` (IPv4) or ``"2"``
        (IPv6), see :func:`family_label`; ``qtype`` and ``rcode`` as code or
        name.  ``zone`` is the zone the query name fell under (e.g.
        ``"cluster.local."``, ``"."`` for forwarded names, ``"dropped"`` for
        queries turned away unparsed) and must come from a small fixed set.
        ``cache_hit`` is None when the query did not go through the response
        cache; a hit is reported with plugin "cache", as CoreDNS does.  Cache
        hits count as "denial" for NXDOMAIN and "success" otherwise.
        """
        key = (zone, proto, family, qtype, rcode, cache_hit, plugin)
        record = self._recorders.get(key)
        if record is None:
            record = self._recorder(*key)
            if len(self._recorders) < _MAX_REMEMBERED:
                self._recorders[key] = record
        record(duration_s, request_size, response_size, dnssec_ok)

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
        """Resolve the metric children for one label combination, once."""
        if proto not in (PROTO_UDP, PROTO_TCP):
            raise ValueError(f"proto must be 'udp' or 'tcp', not {proto!r}")
        if family not in (FAMILY_IPV4, FAMILY_IPV6):
            raise ValueError(f"family must be '1' (IPv4) or '2' (IPv6), not {family!r}")
        type_ = qtype_label(qtype)
        rcode_ = rcode_label(rcode)
        if cache_hit:
            plugin = PLUGIN_CACHE
        base = (self.server, zone, self.view)
        count_request = self._requests.labels(*base, proto, family, type_).inc
        count_do = self._do_requests.labels(*base).inc
        count_response = self._responses.labels(*base, rcode_, plugin).inc
        observe_duration = self._duration.labels(*base, type_).observe
        observe_request_size = self._request_size.labels(*base, proto).observe
        observe_response_size = self._response_size.labels(*base, proto).observe
        if cache_hit is None:
            cache_counts: tuple[Callable[[], None], ...] = ()
        elif cache_hit:
            cache_type = CACHE_DENIAL if rcode_ == "NXDOMAIN" else CACHE_SUCCESS
            cache_counts = (self._cache_request, self._cache_hit_by_type[cache_type])
        else:
            cache_counts = (self._cache_request, self._cache_miss)

        def record(duration_s: float, request_size: int, response_size: int, dnssec_ok: bool) -> None:
            count_request()
            count_response()
            observe_duration(duration_s)
            observe_request_size(request_size)
            observe_response_size(response_size)
            for count in cache_counts:
                count()
            if dnssec_ok:
                count_do()

        return record

    def count_panic(self) -> None:
        """An unexpected exception escaped query handling (and was caught)."""
        self._panics.inc()

    def set_cache_entries(self, count: int, cache_type: str = CACHE_SUCCESS) -> None:
        """The response cache now holds ``count`` entries of ``cache_type``."""
        self._cache_entries_by_type[cache_type].set(count)

    # --- cluster, zone and sources -------------------------------------------

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

    def count_manifest_error(self, count: int = 1) -> None:
        """``count`` manifest documents were rejected."""
        self._manifest_errors.inc(count)

    # --- exposition ------------------------------------------------------------

    def exposition(self) -> bytes:
        """Everything in :attr:`registry`, in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
