"""An in-process Kubernetes API server for tests: list + watch, faithfully enough for the real client.

It speaks the parts of the protocol the official ``kubernetes`` client and our
watch source use, over plain HTTP/1.1 on 127.0.0.1:

* ``GET`` lists of services, endpointslices, endpoints, pods and namespaces,
  cluster-wide or per namespace, with ``limit``/``continue`` paging served from
  a snapshot (as the real server does), ``labelSelector`` and ``fieldSelector``.
* ``?watch=true`` chunked streams of ``{"type": ..., "object": ...}`` lines
  from a ``resourceVersion``, with ``BOOKMARK`` events when
  ``allowWatchBookmarks`` is set and the stream ending after ``timeoutSeconds``.
* ``410 Gone``: an HTTP 410 for a watch or list from a compacted
  resourceVersion, or an ``ERROR`` event carrying a ``Status`` (code 410, reason
  Expired) sent to open watches by :meth:`FakeApiServer.expire_watches`.
* ``GET`` of one named object: the object, or a ``404`` ``Status`` (reason
  NotFound, with ``details``) when it is not held.
* Discovery, enough for ``kubectl`` to map kinds to resources: ``/api``
  (APIVersions), ``/apis`` (APIGroupList), ``/apis/{group}`` (APIGroup),
  ``/api/v1`` and ``/apis/{group}/{version}`` (APIResourceList) and
  ``/version``, for every resource in :data:`RESOURCES` (top-level resources
  only, no subresources).  Discovery is always answered as plain
  ``application/json``, even when the client's ``Accept`` asks for aggregated
  discovery (``application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList``):
  that is what an apiserver without aggregated discovery does, and client-go
  falls back to the per-group-version documents.  With it,
  ``kubectl apply --dry-run=client --validate=false`` works against the fake
  (``GET`` of each object, 404, "created (dry run)").

It is read-only: ``POST``, ``PUT``, ``PATCH`` and ``DELETE`` are recorded and
answered ``405`` (a ``Status`` with reason MethodNotAllowed) for a resource,
``404`` elsewhere, as is everything else it does not serve (``/openapi/...``
included).  Objects are put in place by the test: :meth:`FakeApiServer.add` and
friends.

and lets a test misbehave on purpose: drop every connection, stall open
watches, be unavailable for a while, answer 403 for a resource, 429 with
``Retry-After``, or answer slowly.  Two modes stand for a real apiserver on a
bad day: :meth:`FakeApiServer.freeze` (TCP connections are accepted, nothing is
answered, open watches fall silent: a hung or SIGSTOPped apiserver, or a network
partition after the handshake) and :meth:`FakeApiServer.quiet` (watches get no
bookmarks: a real apiserver sends a new watch's first BOOKMARK only once that
resource's version moves, so a watch of an unchanging resource can go minutes
without a byte while every other request is answered).  Every request is recorded in
:attr:`FakeApiServer.requests` so a test can assert on what the client asked.

There is one global resourceVersion counter, as in etcd: every change bumps it
and is appended to a history that watches replay from.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import itertools
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.fake_portforward import serve_port_forward

# --------------------------------------------------------------------------- resources


# What a real apiserver advertises for an ordinary read-write resource (the fake itself only reads).
_ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    plural: str
    kind: str
    api_version: str  # "v1" or "group/version"
    namespaced: bool
    # Discovery only: as a real apiserver (v1.32) lists them.
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = _ALL_VERBS

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def singular(self) -> str:
        return self.kind.lower()  # built-in resources: "endpoints" for Endpoints, "pod" for Pod

    @property
    def group_resource(self) -> str:
        """``deployments.apps``, or ``services`` for the core group (as in error messages)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def discovery(self) -> dict[str, Any]:
        """This resource's entry in an APIResourceList."""
        entry: dict[str, Any] = {"name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
                                 "kind": self.kind, "verbs": list(self.verbs)}
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        return entry


RESOURCES = {
    r.plural: r
    for r in (
        # What clusterdns reads.
        Resource("services", "Service", "v1", True, ("svc",), ("all",)),
        Resource("endpoints", "Endpoints", "v1", True, ("ep",)),
        Resource("pods", "Pod", "v1", True, ("po",), ("all",)),
        Resource("namespaces", "Namespace", "v1", False, ("ns",),
                 verbs=tuple(v for v in _ALL_VERBS if v != "deletecollection")),
        Resource("endpointslices", "EndpointSlice", "discovery.k8s.io/v1", True),
        Resource("nodes", "Node", "v1", False, ("no",)),  # clusterdns dev reads their addresses
        # What deploy/ creates (for kubectl apply --dry-run=client), plus their close relatives.
        Resource("configmaps", "ConfigMap", "v1", True, ("cm",)),
        Resource("serviceaccounts", "ServiceAccount", "v1", True, ("sa",)),
        Resource("deployments", "Deployment", "apps/v1", True, ("deploy",), ("all",)),
        Resource("poddisruptionbudgets", "PodDisruptionBudget", "policy/v1", True, ("pdb",)),
        Resource("clusterroles", "ClusterRole", "rbac.authorization.k8s.io/v1", False),
        Resource("clusterrolebindings", "ClusterRoleBinding", "rbac.authorization.k8s.io/v1", False),
        Resource("roles", "Role", "rbac.authorization.k8s.io/v1", True),
        Resource("rolebindings", "RoleBinding", "rbac.authorization.k8s.io/v1", True),
    )
}
_BY_KIND = {r.kind: r for r in RESOURCES.values()}

# The version /version reports (kubectl prints it; nothing depends on it).
SERVER_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake", "gitCommit": "", "gitTreeState": "clean",
                  "buildDate": "1970-01-01T00:00:00Z", "goVersion": "", "compiler": "gc", "platform": "linux/amd64"}

# /api/v1[/namespaces/{ns}]/{plural}[/{name}] and /apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}]
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?/?$"
)


_PORT_FORWARD = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/portforward/?$")


# --------------------------------------------------------------------------- selectors


def _label_matcher(selector: str) -> Callable[[dict[str, str]], bool]:
    """Kubernetes label selector: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``, ``a notin (x)``."""
    # Each requirement: (key, operator, values); split on commas outside parentheses.
    requirements: list[tuple[str, str, frozenset[str]]] = []
    for part in (p.strip() for p in re.split(r",(?![^()]*\))", selector) if p.strip()):
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", part):
            values = frozenset(v.strip() for v in m.group(3).split(","))
            requirements.append((m.group(1), m.group(2), values))
        elif m := re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(\S*)", part):
            op = "notin" if m.group(2) == "!=" else "in"
            requirements.append((m.group(1), op, frozenset([m.group(3)])))
        elif part.startswith("!"):
            requirements.append((part[1:].strip(), "absent", frozenset()))
        else:
            requirements.append((part, "present", frozenset()))

    def holds(labels: dict[str, str], key: str, op: str, values: frozenset[str]) -> bool:
        if op == "present":
            return key in labels
        if op == "absent":
            return key not in labels
        return (labels.get(key) in values) == (op == "in")

    return lambda labels: all(holds(labels, *r) for r in requirements)


def _field_value(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for step in path.split("."):
        value = value.get(step) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _field_matcher(selector: str) -> Callable[[dict[str, Any]], bool]:
    """Field selector: comma-separated ``path=value``, ``path==value`` or ``path!=value``."""
    requirements: list[tuple[str, bool, str]] = []  # (path, must equal?, value)
    for part in (p.strip() for p in selector.split(",") if p.strip()):
        m = re.fullmatch(r"([^=!]+)(==|=|!=)(.*)", part)
        if not m:
            raise ValueError(f"bad field selector {part!r}")
        requirements.append((m.group(1), m.group(2) != "!=", m.group(3)))
    return lambda obj: all((_field_value(obj, path) == value) == equal for path, equal, value in requirements)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Request:
    """One request the server received (recorded before any fault is applied)."""

    method: str
    path: str
    resource: str  # plural, "" when the path is not a resource
    namespace: str  # "" for cluster scope
    watch: bool
    params: dict[str, str]
    time: float  # time.monotonic()
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased

    @property
    def resource_version(self) -> str | None:
        return self.params.get("resourceVersion")

    @property
    def probe(self) -> bool:
        """A one-item list: a liveness question, not a (re)list."""
        return not self.watch and self.params.get("limit") == "1"


@dataclass
class _Change:
    rv: int
    resource: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None


@dataclass(eq=False)  # compared and hashed by identity: kept in a set
class _OpenWatch:
    resource: str
    namespace: str
    stalled: bool = False
    expired: bool = False  # send an ERROR 410 and end
    dropped: bool = False  # its connection was closed under it: end quietly


@dataclass
class _Fault:
    """A canned error answer for requests matching ``resource`` (and ``namespace`` if given)."""

    status: int
    resource: str | None
    namespace: str | None
    remaining: int | None  # None: until cleared
    headers: dict[str, str]
    reason: str
    message: str


class _Stopping(Exception):
    pass


# --------------------------------------------------------------------------- the server


class FakeApiServer:
    """State, controls and the HTTP server.  Use :func:`fake_apiserver` (the fixture) to get one running."""

    def __init__(self, token: str | None = None, port: int = 0):
        self.token = token  # when set, requests need "Authorization: Bearer <token>"
        self.requests: list[Request] = []
        # Seconds between BOOKMARK events on watches that asked for them; None: never.
        self.bookmark_interval: float | None = None
        # When True, a watch from a compacted resourceVersion gets 200 + an ERROR event
        # (what a watch-cache-backed apiserver does) instead of an HTTP 410.
        self.expired_watch_as_event = False
        self.delay = 0.0  # seconds to wait before answering any request (slow server)

        self._cond = threading.Condition()
        self._rv = itertools.count(100)  # resourceVersions look like real ones: opaque numbers
        self._current_rv = next(self._rv)
        self._compacted_rv = 0  # a watch from below this gets 410
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {p: {} for p in RESOURCES}
        self._history: list[_Change] = []
        self._snapshots: dict[str, tuple[int, list[dict[str, Any]]]] = {}  # paged lists in progress
        self._watches: set[_OpenWatch] = set()
        self._faults: list[_Fault] = []
        self._unavailable_until = 0.0
        self._frozen = False
        self._stopping = False
        self._connections: set[socket.socket] = set()
        self._uids = itertools.count(1)
        self._snapshot_ids = itertools.count(1)
        # pods/{name}/portforward: (namespace, pod, port) → the TCP address that plays the pod's port
        self._port_forward_targets: dict[tuple[str, str, int], tuple[str, int]] = {}
        self.port_forwards: list[tuple[str, str]] = []  # (namespace, pod) of each stream opened

        self._httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.api = self
        # A short poll interval makes shutdown() (which waits for the next poll) quick.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-apiserver",
                                        daemon=True)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end every stream and join every thread the server started."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._httpd.shutdown()
        self.drop_connections()
        self._httpd.server_close()  # joins the handler threads (block_on_close)
        self._thread.join(5)

    # ------------------------------------------------------------------ objects

    @property
    def resource_version(self) -> str:
        """The current global resourceVersion (of the last change)."""
        with self._cond:
            return str(self._current_rv)

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an object (``kind`` picks the resource); returns the stored copy with its resourceVersion."""
        return self._change("ADDED", obj)

    def modify(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace an existing object with ``obj``."""
        return self._change("MODIFIED", obj)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Add or modify, whichever applies."""
        resource, key = self._locate(obj)
        with self._cond:
            exists = key in self._objects[resource]
        return self._change("MODIFIED" if exists else "ADDED", obj)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        resource = _BY_KIND[kind].plural
        key = (namespace if _BY_KIND[kind].namespaced else "", name)
        with self._cond:
            old = self._objects[resource].pop(key)
            rv = self._bump()
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(rv)
            self._history.append(_Change(rv, resource, "DELETED", gone, old))
            self._cond.notify_all()

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        r = _BY_KIND[kind]
        with self._cond:
            obj = self._objects[r.plural].get((namespace if r.namespaced else "", name))
            return copy.deepcopy(obj) if obj else None

    def objects(self, kind: str) -> list[dict[str, Any]]:
        with self._cond:
            return [copy.deepcopy(o) for _, o in sorted(self._objects[_BY_KIND[kind].plural].items())]

    def _locate(self, obj: dict[str, Any]) -> tuple[str, tuple[str, str]]:
        r = _BY_KIND[obj["kind"]]
        meta = obj["metadata"]
        return r.plural, (meta.get("namespace", "default") if r.namespaced else "", meta["name"])

    def _bump(self) -> int:
        self._current_rv = next(self._rv)
        return self._current_rv

    def _change(self, type_: str, obj: dict[str, Any]) -> dict[str, Any]:
        resource, key = self._locate(obj)
        stored = copy.deepcopy(obj)
        stored.setdefault("apiVersion", RESOURCES[resource].api_version)
        meta = stored["metadata"]
        if RESOURCES[resource].namespaced:
            meta.setdefault("namespace", "default")
        with self._cond:
            old = self._objects[resource].get(key)
            if type_ == "ADDED" and old is not None:
                raise KeyError(f"{obj['kind']} {key} already exists")
            if type_ == "MODIFIED" and old is None:
                raise KeyError(f"{obj['kind']} {key} does not exist")
            meta["uid"] = old["metadata"]["uid"] if old else f"uid-{next(self._uids)}"
            rv = self._bump()
            meta["resourceVersion"] = str(rv)
            self._objects[resource][key] = stored
            self._history.append(_Change(rv, resource, type_, stored, old))
            self._cond.notify_all()
            return copy.deepcopy(stored)

    # ------------------------------------------------------------------ port-forward

    def port_forward_to(self, namespace: str, pod: str, port: int, address: tuple[str, int]) -> None:
        """Port-forwards to ``pod``'s ``port`` reach ``address`` (a TCP server the test runs)."""
        with self._cond:
            self._port_forward_targets[(namespace, pod, port)] = address

    def port_forward_target(self, namespace: str, pod: str, port: int) -> tuple[str, int] | None:
        with self._cond:
            return self._port_forward_targets.get((namespace, pod, port))

    def _count_port_forward(self, namespace: str, pod: str) -> None:
        with self._cond:
            self.port_forwards.append((namespace, pod))
            self._cond.notify_all()

    # ------------------------------------------------------------------ faults and controls

    def compact(self) -> None:
        """Forget history up to now: lists and watches from an older resourceVersion get 410 Gone."""
        with self._cond:
            self._compacted_rv = self._current_rv
            self._history = [c for c in self._history if c.rv > self._compacted_rv]
            self._snapshots.clear()

    def expire_watches(self, resource: str | None = None, namespace: str | None = None) -> None:
        """Compact, and end open watches with an ERROR event (Status 410 Expired), as etcd compaction does.

        ``resource``/``namespace`` pick which open watches get the ERROR (all by default);
        the compaction applies to everything.
        """
        with self._cond:
            self.compact()
            for w in self._matching_watches(resource, namespace):
                w.expired = True
            self._cond.notify_all()

    def stall_watches(self, resource: str | None = None, namespace: str | None = None) -> None:
        """Open watches keep their connection but send nothing more (no events, no bookmarks).

        Watches opened later behave normally.  An ``expire_watches`` still reaches a stalled watch.
        """
        with self._cond:
            for w in self._matching_watches(resource, namespace):
                w.stalled = True

    def freeze(self) -> None:
        """Accept connections but answer nothing, and send nothing more on open watches, until :meth:`thaw`."""
        with self._cond:
            self._frozen = True

    def thaw(self) -> None:
        """Answer again: requests that arrived while frozen are answered now, watches carry on."""
        with self._cond:
            self._frozen = False
            self._cond.notify_all()

    def quiet(self) -> None:
        """No bookmarks: a watch sends only real changes (every request is still answered)."""
        with self._cond:
            self.bookmark_interval = None

    def _wait_thawed(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._frozen or self._stopping)
            if self._stopping:
                raise _Stopping

    def _matching_watches(self, resource: str | None, namespace: str | None) -> list[_OpenWatch]:
        return [w for w in self._watches if resource in (None, w.resource) and namespace in (None, w.namespace)]

    def drop_connections(self) -> None:
        """Close every open client connection (watches and idle keep-alive ones) at the TCP level."""
        with self._cond:
            conns = list(self._connections)
            for w in self._watches:
                w.dropped = True
            self._cond.notify_all()
        for conn in conns:
            with contextlib.suppress(OSError):  # already gone
                conn.shutdown(socket.SHUT_RDWR)

    def unavailable_for(self, seconds: float) -> None:
        """Drop every connection now and close new ones unanswered for ``seconds``."""
        with self._cond:
            self._unavailable_until = time.monotonic() + seconds
        self.drop_connections()

    def come_back(self) -> None:
        """End an outage begun by ``unavailable_for`` now: tests that check state during an
        outage make it long and end it themselves, so the check never races its end."""
        with self._cond:
            self._unavailable_until = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._unavailable_until

    def forbid(
        self, resource: str, namespace: str | None = None, user: str = "system:serviceaccount:kube-system:clusterdns"
    ) -> None:
        """Answer 403 Forbidden to list/watch of ``resource`` (a plural), everywhere or in one namespace."""
        r = RESOURCES[resource]
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        group = f"{resource}.{r.group}" if r.group else resource
        message = (
            f'{group} is forbidden: User "{user}" cannot list resource "{resource}" '
            f'in API group "{r.group}" {scope}'
        )
        self._add_fault(_Fault(403, resource, namespace, None, {}, "Forbidden", message))

    def throttle(self, count: int = 1, retry_after: int = 1, resource: str | None = None) -> None:
        """Answer the next ``count`` requests (for ``resource``, or any) with 429 and ``Retry-After``."""
        self._add_fault(
            _Fault(429, resource, None, count, {"Retry-After": str(retry_after)}, "TooManyRequests",
                   "the server has received too many requests and has asked us to try again later")
        )

    def fail(self, status: int, count: int = 1, resource: str | None = None, reason: str = "InternalError") -> None:
        """Answer the next ``count`` requests with an arbitrary error status."""
        self._add_fault(_Fault(status, resource, None, count, {}, reason, f"injected {status}"))

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()

    def _add_fault(self, fault: _Fault) -> None:
        with self._cond:
            self._faults.append(fault)

    def _take_fault(self, resource: str, namespace: str) -> _Fault | None:
        with self._cond:
            for f in self._faults:
                if f.resource not in (None, resource) or f.namespace not in (None, namespace):
                    continue
                if f.remaining is not None:
                    f.remaining -= 1
                    if f.remaining <= 0:
                        self._faults.remove(f)
                return f
        return None

    # ------------------------------------------------------------------ request log

    def lists(self, resource: str | None = None) -> list[Request]:
        """List requests (pages included), not counting ``limit=1`` probes."""
        return [r for r in self._lists(resource) if not r.probe]

    def probes(self, resource: str | None = None) -> list[Request]:
        """``limit=1`` lists: the client asking whether the server answers at all."""
        return [r for r in self._lists(resource) if r.probe]

    def _lists(self, resource: str | None) -> list[Request]:
        with self._cond:
            return [r for r in self.requests
                    if r.method == "GET" and r.resource and not r.watch and (resource in (None, r.resource))]

    def watches(self, resource: str | None = None) -> list[Request]:
        with self._cond:
            return [r for r in self.requests if r.watch and (resource in (None, r.resource))]

    def open_watches(self, resource: str | None = None) -> int:
        with self._cond:
            return sum(1 for w in self._watches if resource in (None, w.resource) and not w.stalled)

    def wait_for(self, predicate: Callable[[FakeApiServer], bool], timeout: float = 5.0) -> None:
        """Block until ``predicate(server)`` holds (re-checked on every request and change)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("fake apiserver: condition not met in time")
                # Poll too: some conditions (time-based) change without a notify.
                self._cond.wait(min(remaining, 0.05))

    async def await_for(self, predicate: Callable[[FakeApiServer], bool], timeout: float = 5.0) -> None:
        """:meth:`wait_for` without blocking the event loop."""
        import asyncio

        await asyncio.to_thread(self.wait_for, predicate, timeout)

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake when the server stops (so stop() never waits out a slow answer)."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopping, timeout=seconds)

    def _record(self, request: Request) -> None:
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    # ------------------------------------------------------------------ serving (called by the handler)

    def _filter(self, resource: str, namespace: str, params: dict[str, str]) -> Callable[[dict[str, Any] | None], bool]:
        labels = _label_matcher(params.get("labelSelector", ""))
        fields = _field_matcher(params.get("fieldSelector", ""))

        def matches(obj: dict[str, Any] | None) -> bool:
            if obj is None:
                return False
            meta = obj["metadata"]
            if namespace and meta.get("namespace") != namespace:
                return False
            return labels(meta.get("labels") or {}) and fields(obj)

        return matches

    def _list(self, resource: str, namespace: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        r = RESOURCES[resource]
        limit = int(params.get("limit") or 0)
        token = params.get("continue")
        with self._cond:
            if token:
                try:
                    snap_id, offset = json.loads(base64.b64decode(token))
                except ValueError:
                    return 400, _status(400, "BadRequest", "invalid continue token")
                if snap_id not in self._snapshots:
                    return 410, _status(410, "Expired", "The provided continue parameter is too old "
                                        "to display a consistent list result.")
                rv, items = self._snapshots[snap_id]
            else:
                asked = params.get("resourceVersion")
                if asked not in (None, "", "0") and int(asked) < self._compacted_rv:
                    return 410, _status(410, "Expired", f"too old resource version: {asked} ({self._compacted_rv})")
                matches = self._filter(resource, namespace, params)
                rv = self._current_rv
                # References, not copies: a stored object is replaced on change, never changed in place,
                # so the snapshot stays as it was (bench/scale.py lists 150,000 pods through this).
                items = [o for _, o in sorted(self._objects[resource].items()) if matches(o)]
                offset = 0
                snap_id = f"s{next(self._snapshot_ids)}"
            page = items[offset : offset + limit] if limit else items[offset:]
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            rest = len(items) - offset - len(page)
            if rest > 0:
                self._snapshots[snap_id] = (rv, items)
                meta["continue"] = base64.b64encode(json.dumps([snap_id, offset + len(page)]).encode()).decode()
                meta["remainingItemCount"] = rest
        # Items in a real list response carry no kind/apiVersion (a shallow copy: the stored object keeps them).
        page = [{k: v for k, v in item.items() if k not in ("kind", "apiVersion")} for item in page]
        return 200, {"kind": f"{r.kind}List", "apiVersion": r.api_version, "metadata": meta, "items": page}

    def _watch_start(self, resource: str, namespace: str, params: dict[str, str]) -> tuple[int, Any]:
        """Decide how a watch begins: (410, status) or (200, (first rv to send after, initial events))."""
        asked = params.get("resourceVersion")
        matches = self._filter(resource, namespace, params)
        with self._cond:
            if asked in (None, "", "0"):
                # "Get state and start at most recent": synthetic ADDED events for what exists.
                initial = [
                    {"type": "ADDED", "object": copy.deepcopy(o)}
                    for _, o in sorted(self._objects[resource].items())
                    if matches(o)
                ]
                return 200, (self._current_rv, initial)
            if int(asked) < self._compacted_rv:
                status = _status(410, "Expired", f"too old resource version: {asked} ({self._compacted_rv})")
                if self.expired_watch_as_event:
                    return 200, (self._current_rv, [{"type": "ERROR", "object": status}, None])
                return 410, status
            return 200, (int(asked), [])

    def _watch_events(
        self, watch: _OpenWatch, after_rv: int, until: float, params: dict[str, str], bookmarks: bool
    ) -> Iterator[dict[str, Any] | None]:
        """Yield watch events as they happen; None means "end the stream"."""
        matches = self._filter(watch.resource, watch.namespace, params)
        kind = RESOURCES[watch.resource].kind
        api_version = RESOURCES[watch.resource].api_version
        last_bookmark = time.monotonic()
        sent_rv = after_rv
        while True:
            out: list[dict[str, Any]] = []
            with self._cond:
                while True:
                    if self._stopping:
                        raise _Stopping
                    if watch.dropped:
                        return
                    if watch.expired:
                        yield {"type": "ERROR", "object": _status(410, "Expired", "too old resource version")}
                        return
                    now = time.monotonic()
                    silent = watch.stalled or self._frozen  # either ignores timeoutSeconds too
                    wake = None if silent else until
                    if not silent:
                        if now >= until:
                            return
                        out = self._pending(watch, sent_rv, matches)
                        if out:
                            sent_rv = self._current_rv
                            break
                        if bookmarks and self.bookmark_interval is not None:
                            due = last_bookmark + self.bookmark_interval
                            if now >= due:
                                sent_rv = self._current_rv
                                out = [{"type": "BOOKMARK", "object": {
                                    "kind": kind, "apiVersion": api_version,
                                    "metadata": {"resourceVersion": str(sent_rv)},
                                }}]
                                last_bookmark = now
                                break
                            wake = min(until, due)
                    # Changes and controls notify; the timeout covers timeoutSeconds and bookmarks.
                    self._cond.wait(None if wake is None else max(wake - now, 0.001))
            # Write outside the lock so a slow client does not block the server.
            yield from out

    def _pending(
        self, watch: _OpenWatch, sent_rv: int, matches: Callable[[dict[str, Any] | None], bool]
    ) -> list[dict[str, Any]]:
        """Changes after ``sent_rv`` as this watch sees them (selector transitions become ADDED/DELETED)."""
        newer = []
        for change in reversed(self._history):  # newest first: stop at what was already sent
            if change.rv <= sent_rv:
                break
            newer.append(change)
        out = []
        for change in reversed(newer):
            if change.resource != watch.resource:
                continue
            was, now = matches(change.old), matches(change.obj)
            if change.type == "DELETED":
                type_ = "DELETED" if was else None
            elif was and now:
                type_ = "MODIFIED"
            elif now:
                type_ = "ADDED"
            elif was:
                type_ = "DELETED"  # no longer matches the selector
            else:
                type_ = None
            if type_:
                out.append({"type": type_, "object": copy.deepcopy(change.obj)})
        return out


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _group_versions() -> dict[str, dict[str, list[Resource]]]:
    """{group: {version: [resources]}}, "" being the core group, in RESOURCES order."""
    out: dict[str, dict[str, list[Resource]]] = {}
    for r in RESOURCES.values():
        out.setdefault(r.group, {}).setdefault(r.version, []).append(r)
    return out


def _api_group(name: str, versions: dict[str, list[Resource]]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def _discovery(path: str, server_address: str) -> dict[str, Any] | None:
    """The discovery document at ``path``, or None when ``path`` is not a discovery path the fake knows."""
    path = path.rstrip("/")
    groups = _group_versions()
    if path == "/version":
        return dict(SERVER_VERSION)
    if path == "/api":
        return {"kind": "APIVersions", "versions": list(groups.get("", {})),
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [_api_group(g, versions) for g, versions in groups.items() if g]}
    if m := re.fullmatch(r"/api/([^/]+)", path):
        group, version = "", m.group(1)
    elif m := re.fullmatch(r"/apis/([^/]+)/([^/]+)", path):
        group, version = m.group(1), m.group(2)
    elif (m := re.fullmatch(r"/apis/([^/]+)", path)) and m.group(1) in groups and m.group(1):
        return {"kind": "APIGroup", "apiVersion": "v1", **_api_group(m.group(1), groups[m.group(1)])}
    else:
        return None
    resources = groups.get(group, {}).get(version)
    if not resources:
        return None
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": [r.discovery() for r in resources]}


class _HTTPServer(ThreadingHTTPServer):
    # Join handler threads on server_close() so tests can check nothing is left running.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    api: FakeApiServer

    def verify_request(self, request: Any, client_address: Any) -> bool:
        # "Unavailable": accept and close at once, as a restarting apiserver behind a load balancer does.
        return self.api.available

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients vanishing mid-stream is the point of many tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as the client expects
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        threading.current_thread().name = "fake-apiserver-conn"
        with self.server.api._cond:
            self.server.api._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.api._cond:
            self.server.api._connections.discard(self.connection)
        with contextlib.suppress(OSError):  # the client may have vanished mid-write
            super().finish()

    # ---------------------------------------------------------------- helpers

    def _send_json(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # ---------------------------------------------------------------- GET

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        api = self.server.api
        parts = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if m := _PORT_FORWARD.match(parts.path):
            api._record(Request("GET", parts.path, "pods/portforward", m.group(1), False, params, time.monotonic(),
                                {k.lower(): v for k, v in self.headers.items()}))
            if api.token is not None and self.headers.get("Authorization") != f"Bearer {api.token}":
                return self._send_json(401, _status(401, "Unauthorized", "Unauthorized"))
            return serve_port_forward(self, m.group(1), m.group(2), parts.query)
        m = _PATH.match(parts.path)
        api_version = (m.group("core") or f"{m.group('group')}/{m.group('version')}") if m else ""
        resource = m.group("plural") if m else ""
        namespace = (m.group("ns") or "") if m else ""
        name = (m.group("name") or "") if m else ""
        known = resource in RESOURCES and RESOURCES[resource].api_version == api_version
        watch = params.get("watch") in ("true", "1")
        api._record(Request("GET", parts.path, resource if known else "", namespace, watch, params,
                            time.monotonic(), {k.lower(): v for k, v in self.headers.items()}))
        try:
            api._wait_thawed()
        except _Stopping:
            self.close_connection = True
            return

        if api.delay:
            api._pause(api.delay)
        if api.token is not None and self.headers.get("Authorization") != f"Bearer {api.token}":
            return self._send_json(401, _status(401, "Unauthorized", "Unauthorized"))
        if not known:
            # Discovery is answered as plain JSON whatever Accept asks for (aggregated
            # discovery included): clients then fall back to the legacy documents.
            if (doc := _discovery(parts.path, "{}:{}".format(*self.server.server_address[:2]))) is not None:
                return self._send_json(200, doc)
            return self._not_found(parts.path)
        if fault := api._take_fault(resource, namespace):
            return self._send_json(fault.status, _status(fault.status, fault.reason, fault.message), fault.headers)
        if name:
            r = RESOURCES[resource]
            obj = api.get(r.kind, namespace, name)
            if obj is None:
                status = _status(404, "NotFound", f'{r.group_resource} "{name}" not found')
                status["details"] = {"name": name, "group": r.group, "kind": resource}
                return self._send_json(404, status)
            return self._send_json(200, obj)
        if not watch:
            code, body = api._list(resource, namespace, params)
            return self._send_json(code, body)
        self._serve_watch(resource, namespace, params)

    def _not_found(self, path: str) -> None:
        message = f"the server could not find the requested resource ({path})"
        self._send_json(404, _status(404, "NotFound", message))

    # ---------------------------------------------------------------- writes: refused

    def _refuse(self) -> None:
        """Record a write and refuse it: 405 for a resource path, 404 for anything else."""
        api = self.server.api
        with contextlib.suppress(ValueError, OSError):  # drain the body so the connection stays usable
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        m = _PATH.match(parts.path)
        api_version = (m.group("core") or f"{m.group('group')}/{m.group('version')}") if m else ""
        resource = m.group("plural") if m else ""
        known = resource in RESOURCES and RESOURCES[resource].api_version == api_version
        api._record(Request(self.command, parts.path, resource if known else "", (m.group("ns") or "") if m else "",
                            False, params, time.monotonic(), {k.lower(): v for k, v in self.headers.items()}))
        if api.delay:
            api._pause(api.delay)
        if api.token is not None and self.headers.get("Authorization") != f"Bearer {api.token}":
            return self._send_json(401, _status(401, "Unauthorized", "Unauthorized"))
        if not known:
            return self._not_found(parts.path)
        message = f"{self.command} is not supported: the fake API server only reads (GET)"
        self._send_json(405, _status(405, "MethodNotAllowed", message))

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse  # http.server dispatches on these names

    def _serve_watch(self, resource: str, namespace: str, params: dict[str, str]) -> None:
        api = self.server.api
        code, start = api._watch_start(resource, namespace, params)
        if code != 200:
            return self._send_json(code, start)
        after_rv, initial = start
        timeout = float(params.get("timeoutSeconds") or 1800)
        bookmarks = params.get("allowWatchBookmarks") in ("true", "1")

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

        watch = _OpenWatch(resource, namespace)
        with api._cond:
            api._watches.add(watch)
        try:
            later = api._watch_events(watch, after_rv, time.monotonic() + timeout, params, bookmarks)
            events = itertools.chain(initial, later)
            for event in events:
                if event is None:
                    break
                self._chunk(json.dumps(event).encode() + b"\n")
            self._chunk(b"")  # the terminating zero-length chunk: a clean end of stream
        except (_Stopping, OSError):
            self.close_connection = True
        finally:
            with api._cond:
                api._watches.discard(watch)


# --------------------------------------------------------------------------- helpers for tests


def write_kubeconfig(
    path: Path, server_url: str, token: str | None = None, context: str = "fake", namespace: str = "default"
) -> Path:
    """Write a kubeconfig that points at ``server_url`` (plain http; a bearer token if given)."""
    user: dict[str, Any] = {"token": token} if token else {}
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server_url}}],
        "users": [{"name": context, "user": user}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def service(name: str, namespace: str = "default", ip: str = "10.0.0.1", labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None, port: int = 80, **spec: Any) -> dict[str, Any]:
    """A ClusterIP Service manifest."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                 "ports": [{"name": "http", "port": port, "protocol": "TCP"}], "selector": {"app": name}, **spec},
    }


def endpoint_slice(name: str, service_name: str, namespace: str = "default", addresses: tuple[str, ...] = ("10.1.0.1",),
                   labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": service_name, **(labels or {})}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def pod(name: str, namespace: str = "default", ip: str = "10.2.0.1", phase: str = "Running") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]},
        "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }


@pytest.fixture
def fake_apiserver() -> Iterator[FakeApiServer]:
    """A running :class:`FakeApiServer`, stopped (threads joined) after the test."""
    server = FakeApiServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kubeconfig(fake_apiserver: FakeApiServer, tmp_path: Path) -> Path:
    """A kubeconfig file pointing at the fake server."""
    return write_kubeconfig(tmp_path / "kubeconfig", fake_apiserver.url)


# --------------------------------------------------------------------------- by hand


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.fake_apiserver --port N --fixture FILE``: serve a fixture until Ctrl-C (docs sessions)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m tests.fake_apiserver",
                                     description="An in-process Kubernetes API server for tests, run by hand.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--fixture", action="append", default=[], metavar="FILE",
                        help="YAML documents to serve (Namespaces, Services, EndpointSlices, Pods, Nodes); repeatable")
    parser.add_argument("--port-forward", action="append", default=[], metavar="NS/POD:PORT=HOST:PORT",
                        help="pods/POD/portforward to PORT reaches this TCP address; repeatable")
    parser.add_argument("--kubeconfig", metavar="FILE", help="also write a kubeconfig for it here")
    parser.add_argument("--context", default="fake", help="the kubeconfig's context name (default %(default)s)")
    parser.add_argument("--namespace", default="default", help="the context's namespace (default %(default)s)")
    parser.add_argument("--bookmark-interval", type=float, default=5.0, metavar="SECONDS",
                        help="BOOKMARK events on watches that ask (a real server: about a minute) (default %(default)s)")
    args = parser.parse_args(argv)
    server = FakeApiServer(port=args.port)
    server.bookmark_interval = args.bookmark_interval
    for path in args.fixture:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if doc:
                server.add(doc)
    for spec in args.port_forward:
        where, _, target = spec.partition("=")
        pod_ref, _, port = where.rpartition(":")
        ns, _, pod_name = pod_ref.partition("/")
        host, _, target_port = target.rpartition(":")
        server.port_forward_to(ns, pod_name, int(port), (host, int(target_port)))
    if args.kubeconfig:
        write_kubeconfig(Path(args.kubeconfig), server.url, context=args.context, namespace=args.namespace)
    server.start()
    print(f"fake API server on {server.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
