"""Wiring: sources → cluster → zone → responder, in one object a command or a test can start."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from .cluster import Changes, Cluster
from .events import Event
from .autopath import Autopath
from .reasons import Catalog
from .records import APEX_OWNER, apex_records, apply_changes
from .settings import Settings
from .sources.manifests import DEFAULT_MAX_BYTES, ManifestSource
from .wire import Responder
from .zone import Zone

log = logging.getLogger(__name__)

# Namespaces every cluster has; manifests rarely declare them.
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class ClusterDNS:
    """The whole DNS state of one process: feed it events, ask it bytes."""

    def __init__(
        self,
        settings: Settings,
        derive_endpoints: bool = False,
        implicit_namespaces: Sequence[str] = (),
        required_kinds: Sequence[str] = (),
        require_namespace: bool = False,
    ):
        self.settings = settings
        self.required_kinds = frozenset(required_kinds)  # kinds that must sync before misses are vouched for
        self.cluster = Cluster(
            derive_endpoints=derive_endpoints,
            implicit_namespaces=implicit_namespaces,
            require_namespace=require_namespace,
        )
        self.zone, self.responder = new_zone(settings, self.cluster)
        self.zone.set_complete(not self.required_kinds)
        self.batches = 0
        self._pending: Changes | None = None  # gathered until the first sync (defer_until_synced)

    def defer_until_synced(self) -> None:
        """Build the zone once, when every required kind has synced, rather than as each kind arrives.

        The kinds list in parallel: Services that arrive before their
        EndpointSlices would have their records built twice.  Until the sync
        (or :meth:`build_pending`) the zone holds nothing from the cluster;
        ``serve`` is not ready then anyway.  Call before the first event.
        """
        if not self.synced:
            self._pending = Changes()

    def build_pending(self) -> None:
        """Stop deferring and build what has arrived (``serve`` gave up waiting for the first sync)."""
        pending, self._pending = self._pending, None
        if pending:
            apply_changes(self.zone, self.cluster, pending, self.settings)

    def sink(self, events: Sequence[Event]) -> None:
        """Apply one batch of source events (on the event-loop thread)."""
        changes = self.cluster.apply(events)
        self.batches += 1
        if self._pending is not None:
            self._pending.update(changes)
            if not self.synced:
                return
            changes, self._pending = self._pending, None
        if changes and apply_changes(self.zone, self.cluster, changes, self.settings):
            log.debug("zone serial %d after %d event(s)", self.zone.serial, len(events))
        if not self.zone.complete and self.synced:
            self.zone.set_complete(True)

    @property
    def synced(self) -> bool:
        """Every required kind has delivered its first full state."""
        return self.required_kinds <= self.cluster.synced

    @classmethod
    def for_manifests(cls, settings: Settings) -> "ClusterDNS":
        """Manifest input: play the endpoint controllers and assume the built-in namespaces."""
        return cls(settings, derive_endpoints=True, implicit_namespaces=BUILTIN_NAMESPACES)


def new_zone(settings: Settings, cluster: Cluster) -> tuple[Zone, Responder]:
    """A zone (with its explanations' catalog and its answer cache) holding what ``cluster`` holds now."""
    zone = Zone(settings)
    if settings.explain:
        zone.catalog = Catalog(zone)
    responder = Responder(zone)
    if settings.autopath:
        cluster.index_pod_ips()
        responder.autopath = Autopath(cluster, zone)
    responder.forwarding = settings.recursion  # what is not served here goes upstream
    zone.replace(APEX_OWNER, apex_records(None, settings))
    apply_changes(zone, cluster, Changes(namespaces=set(cluster.implicit_namespaces)), settings)
    return zone, responder


def load_manifests(
    paths: Sequence[str | Path], settings: Settings, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[ClusterDNS, ManifestSource]:
    """A ClusterDNS holding what ``paths`` say (errors are in ``source.errors``)."""
    dns = ClusterDNS.for_manifests(settings)
    source = ManifestSource(paths, dns.sink, max_bytes=max_bytes)
    source.load()
    return dns, source
