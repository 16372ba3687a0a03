"""The DNS state of one kubeconfig context: one object store, answered under one or more zones.

The current context answers under ``cluster.local`` and ``<context>.k8s`` at
once; both zones are fed from the same store (the objects are kept once),
each with its own settings, answer cache and explanations.

Misses are only vouched for (NXDOMAIN) while the context is synced and its API
reachable: before the first sync and while the API is gone they answer
SERVFAIL, which operating systems do not cache, and names already known keep
answering from the last state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..app import new_zone
from ..cluster import Changes, Cluster
from ..events import Event
from ..objects import NODE, Service
from ..records import apply_changes, service_name
from ..settings import Settings
from ..wire import Responder
from ..zone import Zone
from .contexts import Context
from .reach import Reach, ReachPolicy

log = logging.getLogger("clusterdns.dev")


@dataclass
class View:
    """One zone a context answers under."""

    settings: Settings
    zone: Zone
    responder: Responder


@dataclass
class ContextDNS:
    context: Context
    policy: ReachPolicy
    required_kinds: frozenset[str]
    cluster: Cluster = field(default_factory=Cluster)
    views: list[View] = field(default_factory=list)
    error: str = ""  # why this context is not served (its credentials failed), for status
    api_down_since: float | None = None
    # Called with the services a batch changed (the port forwarder follows them).
    on_services: Callable[["ContextDNS", set[tuple[str, str]]], None] | None = None
    nodes_listed: asyncio.Event = field(default_factory=asyncio.Event)  # NodePort answers are known from then on

    def add_zone(self, settings: Settings) -> View:
        zone, responder = new_zone(settings, self.cluster)
        zone.set_complete(False)
        view = View(settings, zone, responder)
        self.views.append(view)
        return view

    # ------------------------------------------------------------------ events

    def sink(self, events: Sequence[Event]) -> None:
        """One batch from the context's KubeSource (on the event loop)."""
        changes = self.cluster.apply(events)
        self.api_back()
        if NODE in self.cluster.synced:
            self.nodes_listed.set()
        if changes:
            for view in self.views:
                self._notes(view, changes)  # before apply_changes, which commits both
                apply_changes(view.zone, self.cluster, changes, view.settings, records_of=self.policy.records)
            for namespace, name in changes.services:
                if self.cluster.service((namespace, name)) is None:
                    self.policy.forget(namespace, name)
            if self.on_services is not None and changes.services:
                self.on_services(self, changes.services)
        self._update_complete()

    def _notes(self, view: View, changes: Changes) -> None:
        """Why a Service has no answer (the EDE text of its NODATA)."""
        for ref in changes.services:
            service = self.cluster.service(ref)
            name = service_name(ref, view.settings)
            note = self.policy.decide(service).note if service is not None else ""
            if view.zone.notes.get(name, "") != note:
                if note:
                    view.zone.notes[name] = note
                else:
                    view.zone.notes.pop(name, None)
                view.zone.touch((name,))

    @property
    def synced(self) -> bool:
        return not self.error and self.required_kinds <= self.cluster.synced

    @property
    def answering(self) -> bool:
        """Are misses vouched for (NXDOMAIN), or SERVFAIL?"""
        return self.synced and self.api_down_since is None

    def api_lost(self) -> None:
        if self.api_down_since is None:
            self.api_down_since = time.time()
            log.warning('context "%s": lost contact with its API server; misses answer SERVFAIL until it is back',
                        self.context.name)
            self._update_complete()

    def api_back(self) -> None:
        if self.api_down_since is not None:
            self.api_down_since = None
            log.info('context "%s": its API server is reachable again', self.context.name)
        self._update_complete()

    def _update_complete(self) -> None:
        reason = "not synced with the Kubernetes API yet"
        if self.error:
            reason = f'context "{self.context.name}" is not served: {self.error}'
        elif self.synced and self.api_down_since is not None:
            reason = (f'the API server of context "{self.context.name}" is unreachable: '
                      "names it does not know are not denied until it is back")
        for view in self.views:
            view.zone.incomplete_reason = reason
            view.zone.set_complete(self.answering)

    # ------------------------------------------------------------------ status

    def services(self) -> list[tuple[str, str, Reach]]:
        """(namespace, name, how it answers) for every Service, sorted."""
        out = []
        for key in sorted(k for k in self.cluster.objects if k[0] == "Service"):
            service = self.cluster.objects[key]
            assert isinstance(service, Service)  # the key's kind is Service
            slices = self.cluster.endpoint_slices((key[1], key[2]))
            out.append((key[1], key[2], self.policy.decide(service, slices)))
        return out
