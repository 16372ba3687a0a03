"""KubeSource against the in-process fake API server, through the real ``kubernetes`` client.

Each test starts a source from a generated kubeconfig, drives the fake server
(changes, faults) and awaits the events the sink receives on the event loop.
Waits are bounded; nothing sleeps where an event can be awaited.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from clusterdns.events import Delete, Event, Replace, Synced, Upsert
from clusterdns.objects import ENDPOINT_SLICE, NAMESPACE, POD, SERVICE, Key, KubeObject, read_object
from clusterdns.sources.kube import DEFAULT_KINDS, THREAD_PREFIX, KubeSource
from clusterdns.sources.watch_options import WatchOptions
from tests.fake_apiserver import (
    FakeApiServer,
    endpoint_slice,
    namespace,
    pod,
    service,
    write_kubeconfig,
)

WAIT = 5.0  # seconds any single expected thing may take


# --------------------------------------------------------------------------- helpers


class Recorder:
    """A sink that keeps the state the events describe, and lets a test await conditions on it."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.state: dict[Key, KubeObject] = {}
        self.synced: set[str] = set()
        self.loop_thread = threading.get_ident()
        self._changed = asyncio.Event()

    def __call__(self, events: list[Event]) -> None:
        assert threading.get_ident() == self.loop_thread, "sink called off the event loop"
        self.batches.append(list(events))
        for event in events:
            match event:
                case Upsert(obj):
                    self.state[obj.key] = obj
                case Delete(key):
                    del self.state[key]
                case Replace(kind, objects):
                    self.state = {k: v for k, v in self.state.items() if k[0] != kind}
                    self.state.update((o.key, o) for o in objects)
                case Synced(kind):
                    self.synced.add(kind)
        self._changed.set()

    @property
    def events(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]

    def names(self, kind: str) -> set[str]:
        return {f"{ns}/{name}" if ns else name for (k, ns, name) in self.state if k == kind}

    async def wait(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def wait_synced(self, *kinds: str, timeout: float = WAIT) -> None:
        await self.wait(lambda: set(kinds) <= self.synced, timeout)

    async def next_events(self, timeout: float = WAIT) -> list[Event]:
        """The events of batches that arrive from now on (at least one batch)."""
        seen = len(self.batches)
        await self.wait(lambda: len(self.batches) > seen, timeout)
        return [e for batch in self.batches[seen:] for e in batch]


class Restarts:
    """An on_restart callback whose calls a test can await."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def __call__(self, kind: str, reason: str) -> None:  # on a watch thread
        self._loop.call_soon_threadsafe(self._record, kind, reason)

    def _record(self, kind: str, reason: str) -> None:
        self.calls.append((kind, reason))
        self._changed.set()

    async def wait(self, kind: str, reason: str, timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while (kind, reason) not in self.calls:
                self._changed.clear()
                await self._changed.wait()


def svc(obj: dict[str, Any]) -> KubeObject:
    """The typed value the source should emit for a stored manifest."""
    converted = read_object(obj)
    assert converted is not None
    return converted


def source_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


@pytest.fixture
def make_source(kubeconfig: Path) -> Iterator[Callable[..., tuple[KubeSource, Recorder]]]:
    """Start KubeSources on the running loop; stop them all after the test and check no thread is left."""
    sources: list[KubeSource] = []

    def make(**kwargs: Any) -> tuple[KubeSource, Recorder]:
        recorder = Recorder()
        kwargs.setdefault("kubeconfig", str(kubeconfig))
        kwargs.setdefault("kinds", (SERVICE,))
        source = KubeSource(recorder, **kwargs)
        sources.append(source)
        source.start()
        return source, recorder

    yield make
    started = time.monotonic()
    for source in sources:
        source.stop()
    assert time.monotonic() - started < 2.0, "stop() was not prompt"
    assert source_threads() == []


# --------------------------------------------------------------------------- listing


async def test_initial_list_in_pages(fake_apiserver: FakeApiServer, make_source: Callable) -> None:
    for i in range(10):
        fake_apiserver.add(service(f"web-{i}", ip=f"10.0.0.{i + 1}"))
    list_rv = fake_apiserver.resource_version

    _, rec = make_source(options=WatchOptions(page_size=3))
    await rec.wait_synced(SERVICE)

    # One batch: the whole kind, then "synced".
    assert rec.batches[0][-1] == Synced(SERVICE)
    [replace] = [e for e in rec.batches[0] if isinstance(e, Replace)]
    assert {o.name for o in replace.objects} == {f"web-{i}" for i in range(10)}
    assert replace.objects[0] == svc(fake_apiserver.get("Service", "default", "web-0"))

    lists = fake_apiserver.lists("services")
    assert [r.params.get("limit") for r in lists] == ["3"] * 4
    assert "continue" not in lists[0].params and all("continue" in r.params for r in lists[1:])
    await fake_apiserver.await_for(lambda s: len(s.watches("services")) >= 1)
    watch = fake_apiserver.watches("services")[0]
    assert watch.resource_version == list_rv
    assert watch.params["allowWatchBookmarks"] == "true"


async def test_thousand_services(fake_apiserver: FakeApiServer, make_source: Callable) -> None:
    for i in range(1000):
        fake_apiserver.add(service(f"s{i:04}", namespace=f"ns{i % 10}", ip=f"10.{i // 250}.{i % 250}.1"))

    started = time.monotonic()
    _, rec = make_source()
    await rec.wait_synced(SERVICE, timeout=20)

    assert len(rec.names(SERVICE)) == 1000
    assert len(fake_apiserver.lists("services")) == 2  # 500 a page
    assert time.monotonic() - started < 10


async def test_default_kinds_and_no_pods_unless_asked(fake_apiserver: FakeApiServer, make_source: Callable) -> None:
    fake_apiserver.add(namespace("default"))
    fake_apiserver.add(service("web"))
    fake_apiserver.add(endpoint_slice("web-abc", "web"))
    fake_apiserver.add(pod("web-1"))

    assert DEFAULT_KINDS == (NAMESPACE, SERVICE, ENDPOINT_SLICE)
    _, rec = make_source(kinds=DEFAULT_KINDS)
    await rec.wait_synced(NAMESPACE, SERVICE, ENDPOINT_SLICE)
    assert rec.names(NAMESPACE) == {"default"}
    assert rec.names(ENDPOINT_SLICE) == {"default/web-abc"}
    assert fake_apiserver.lists("pods") == []

    fake_apiserver.add(pod("done", ip="10.2.0.9", phase="Succeeded"))
    _, rec_pods = make_source(kinds=(POD,))
    await rec_pods.wait_synced(POD)
    assert rec_pods.names(POD) == {"default/web-1"}  # finished pods are filtered by the server
    assert "status.phase!=Succeeded" in fake_apiserver.lists("pods")[0].params["fieldSelector"]


# --------------------------------------------------------------------------- watching


async def test_add_modify_delete_reach_the_sink(fake_apiserver: FakeApiServer, make_source: Callable) -> None:
    fake_apiserver.add(service("web"))
    _, rec = make_source(kinds=(SERVICE, ENDPOINT_SLICE))
    await rec.wait_synced(SERVICE, ENDPOINT_SLICE)

    added = fake_apiserver.add(service("api", ip="10.0.0.2"))
    assert await rec.next_events() == [Upsert(svc(added))]

    modified = fake_apiserver.modify(service("api", ip="10.0.0.3"))
    assert await rec.next_events() == [Upsert(svc(modified))]

    fake_apiserver.delete("Service", "default", "api")
    assert await rec.next_events() == [Delete((SERVICE, "default", "api"))]

    fake_apiserver.add(endpoint_slice("web-abc", "web", addresses=("10.1.0.7",)))
    await rec.wait(lambda: "default/web-abc" in rec.names(ENDPOINT_SLICE))
    assert rec.state[(ENDPOINT_SLICE, "default", "web-abc")].endpoints[0].addresses == ("10.1.0.7",)


async def test_change_invisible_to_dns_is_not_emitted(fake_apiserver: FakeApiServer, make_source: Callable) -> None:
    fake_apiserver.add(service("web"))
    _, rec = make_source()
    await rec.wait_synced(SERVICE)

    fake_apiserver.modify(service("web", annotations={"touched": "yes"}))
    visible = fake_apiserver.modify(service("web", annotations={"touched": "yes"}, ip="10.0.0.9"))
    # The next thing the sink hears is the IP change: the annotation-only change was dropped.
    assert await rec.next_events() == [Upsert(svc(visible))]


async def test_unreadable_object_is_logged_and_skipped(
    fake_apiserver: FakeApiServer, make_source: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    fake_apiserver.add(service("good"))
    fake_apiserver.add(service("bad", ip="not-an-ip"))
    _, rec = make_source()
    await rec.wait_synced(SERVICE)
    assert rec.names(SERVICE) == {"default/good"}
    assert "Service default/bad" in caplog.text and "spec.clusterIPs[0]" in caplog.text

    fixed = fake_apiserver.modify(service("bad", ip="10.0.0.5"))
    assert await rec.next_events() == [Upsert(svc(fixed))]
    # Broken again: what DNS served for it is withdrawn rather than left stale.
    fake_apiserver.modify(service("bad", ip="still-not-an-ip"))
    assert await rec.next_events() == [Delete((SERVICE, "default", "bad"))]


async def test_label_selector(fake_apiserver: FakeApiServer, make_source: Callable) -> None:
    fake_apiserver.add(service("in", labels={"dns": "yes"}))
    fake_apiserver.add(service("out"))
    _, rec = make_source(label_selector="dns=yes")
    await rec.wait_synced(SERVICE)
    assert rec.names(SERVICE) == {"default/in"}
    assert fake_apiserver.lists("services")[0].params["labelSelector"] == "dns=yes"

    # Relabelled out of the selector: the server says DELETED.
    fake_apiserver.modify(service("in"))
    assert await rec.next_events() == [Delete((SERVICE, "default", "in"))]


# --------------------------------------------------------------------------- resuming and relisting


async def test_dropped_connection_resumes_without_relist(fake_apiserver: FakeApiServer, make_source: Callable) -> None:
    fake_apiserver.add(service("web"))
    _, rec = make_source()
    await rec.wait_synced(SERVICE)
    added = fake_apiserver.add(service("api", ip="10.0.0.2"))
    await rec.next_events()
    last_rv = added["metadata"]["resourceVersion"]
    watches_before = len(fake_apiserver.watches("services"))

    fake_apiserver.drop_connections()
    later = fake_apiserver.add(service("late", ip="10.0.0.3"))
    assert await rec.next_events() == [Upsert(svc(later))]

    resumed = fake_apiserver.watches("services")[watches_before:]
    assert resumed and resumed[0].resource_version == last_rv
    assert len(fake_apiserver.lists("services")) == 1


@pytest.mark.parametrize("how", ["error-event", "http-410", "error-event-at-start"])
async def test_expired_resource_version_relists_into_one_replace(
    fake_apiserver: FakeApiServer, make_source: Callable, how: str
) -> None:
    for i in range(5):
        fake_apiserver.add(service(f"s{i}", ip=f"10.0.0.{i + 1}"))
    restarts = Restarts()
    source, rec = make_source(on_restart=restarts)
    await rec.wait_synced(SERVICE)
    await fake_apiserver.await_for(lambda s: s.open_watches("services") == 1)

    # Changes the source does not see: its watch is stalled while they happen.
    fake_apiserver.stall_watches()
    fake_apiserver.delete("Service", "default", "s0")
    fake_apiserver.modify(service("s1", ip="10.0.1.1"))
    fake_apiserver.add(service("s9", ip="10.0.0.9"))
    fake_apiserver.delete("Service", "default", "s9")  # born and gone while away: never seen
    fake_apiserver.add(service("s5", ip="10.0.0.6"))
    seen = len(rec.batches)

    if how == "error-event":
        fake_apiserver.expire_watches()  # ERROR {code: 410, reason: Expired} mid-stream
    else:
        fake_apiserver.expired_watch_as_event = how == "error-event-at-start"
        fake_apiserver.compact()
        fake_apiserver.drop_connections()  # resumes from a compacted RV: HTTP 410 (or 200 + ERROR)

    await restarts.wait(SERVICE, "expired")
    await rec.wait(lambda: len(rec.batches) > seen)
    [[replace]] = rec.batches[seen:]
    assert isinstance(replace, Replace)
    assert sorted(replace.objects, key=lambda o: o.name) == [svc(o) for o in fake_apiserver.objects("Service")]
    assert rec.names(SERVICE) == {"default/s1", "default/s2", "default/s3", "default/s4", "default/s5"}
    assert source.relists[SERVICE] == 1
    assert len(fake_apiserver.lists("services")) == 2


async def test_relist_of_one_namespace_keeps_the_others(fake_apiserver: FakeApiServer, make_source: Callable) -> None:
    for ns in ("a", "b"):
        fake_apiserver.add(service("web", namespace=ns))
    _, rec = make_source(namespaces={"a", "b"})
    await rec.wait_synced(SERVICE)
    await fake_apiserver.await_for(lambda s: s.open_watches("services") == 2)

    fake_apiserver.stall_watches(namespace="a")
    fake_apiserver.delete("Service", "a", "web")
    seen = len(rec.batches)
    fake_apiserver.expire_watches(namespace="a")

    await rec.wait(lambda: len(rec.batches) > seen)
    [[replace]] = rec.batches[seen:]
    assert isinstance(replace, Replace)
    assert {(o.namespace, o.name) for o in replace.objects} == {("b", "web")}


async def test_watch_outliving_its_timeout_is_restarted(fake_apiserver: FakeApiServer, make_source: Callable) -> None:
    """The server ends every watch after timeoutSeconds; one still open well past that lost its end on the way."""
    fake_apiserver.add(service("web"))
    restarts = Restarts()
    options = WatchOptions(watch_timeout=(1, 1), stall_margin=0.5)
    source, rec = make_source(options=options, on_restart=restarts)
    await rec.wait_synced(SERVICE)
    await fake_apiserver.await_for(lambda s: s.open_watches("services") == 1)
    watches_before = len(fake_apiserver.watches("services"))

    fake_apiserver.stall_watches()  # open, but sends nothing and ignores timeoutSeconds
    await restarts.wait(SERVICE, "stalled", timeout=5)
    added = fake_apiserver.add(service("api", ip="10.0.0.2"))
    assert await rec.next_events() == [Upsert(svc(added))]

    assert len(fake_apiserver.watches("services")) > watches_before
    assert len(fake_apiserver.lists("services")) == 1
    assert source.restarts[(SERVICE, "stalled")] == 1


async def test_api_unavailable_then_back(fake_apiserver: FakeApiServer, make_source: Callable) -> None:
    fake_apiserver.add(service("web"))
    restarts = Restarts()
    _, rec = make_source(options=WatchOptions(max_backoff=0.5), on_restart=restarts)
    await rec.wait_synced(SERVICE)

    fake_apiserver.unavailable_for(2.0)
    await restarts.wait(SERVICE, "disconnected")
    added = fake_apiserver.add(service("api", ip="10.0.0.2"))  # while it is away

    assert await rec.next_events(timeout=10) == [Upsert(svc(added))]
    assert len(fake_apiserver.lists("services")) == 1  # caught up by resuming the watch


# --------------------------------------------------------------------------- refusals


async def test_forbidden_names_the_missing_permission(
    fake_apiserver: FakeApiServer, make_source: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="clusterdns.sources.kube")
    fake_apiserver.add(service("web"))
    fake_apiserver.add(endpoint_slice("web-abc", "web"))
    fake_apiserver.forbid("endpointslices")
    _, rec = make_source(kinds=(SERVICE, ENDPOINT_SLICE), options=WatchOptions(max_backoff=0.3))

    await rec.wait_synced(SERVICE)  # the other kinds are not held up
    await fake_apiserver.await_for(lambda s: len(s.lists("endpointslices")) >= 3)  # and it keeps trying
    assert (
        "forbidden: cannot list endpointslices.discovery.k8s.io at cluster scope: "
        "grant list/watch on endpointslices (see deploy/00-rbac.yaml)"
    ) in caplog.text
    assert ENDPOINT_SLICE not in rec.synced

    fake_apiserver.clear_faults()  # permission granted
    await rec.wait_synced(ENDPOINT_SLICE)
    assert rec.names(ENDPOINT_SLICE) == {"default/web-abc"}


async def test_too_many_requests_honours_retry_after(fake_apiserver: FakeApiServer, make_source: Callable) -> None:
    fake_apiserver.add(service("web"))
    fake_apiserver.throttle(1, retry_after=1, resource="services")
    _, rec = make_source(options=WatchOptions(max_backoff=0.1))
    await rec.wait_synced(SERVICE)

    first, second = fake_apiserver.lists("services")[:2]
    assert second.time - first.time >= 0.95
    assert fake_apiserver.probes() == []  # an API server that asks us to slow down gets no extra requests


async def test_server_errors_are_retried(
    fake_apiserver: FakeApiServer, make_source: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    fake_apiserver.add(service("web"))
    fake_apiserver.fail(500, count=2, resource="services")
    restarts = Restarts()
    _, rec = make_source(options=WatchOptions(max_backoff=0.2), on_restart=restarts)
    await rec.wait_synced(SERVICE)
    assert restarts.calls.count((SERVICE, "error")) == 2
    assert "API server error 500 for services at cluster scope" in caplog.text


# --------------------------------------------------------------------------- filters


async def test_namespace_filter(fake_apiserver: FakeApiServer, make_source: Callable) -> None:
    for ns in ("a", "b", "c"):
        fake_apiserver.add(namespace(ns))
        fake_apiserver.add(service("web", namespace=ns))
    _, rec = make_source(kinds=(NAMESPACE, SERVICE), namespaces={"a", "b"})
    await rec.wait_synced(NAMESPACE, SERVICE)

    assert rec.names(SERVICE) == {"a/web", "b/web"}
    assert rec.names(NAMESPACE) == {"a", "b"}
    assert {r.namespace for r in fake_apiserver.lists("services")} == {"a", "b"}
    assert {r.params.get("fieldSelector") for r in fake_apiserver.lists("namespaces")} == {
        "metadata.name=a", "metadata.name=b",
    }

    fake_apiserver.add(service("api", namespace="c"))
    added = fake_apiserver.add(service("api", namespace="b"))
    await rec.wait(lambda: "b/api" in rec.names(SERVICE))
    assert rec.state[(SERVICE, "b", "api")] == svc(added)
    assert "c/api" not in rec.names(SERVICE)
    assert all(r.namespace in ("a", "b") for r in fake_apiserver.watches("services"))


async def test_namespace_label_selector(fake_apiserver: FakeApiServer, make_source: Callable) -> None:
    fake_apiserver.add(namespace("shown", labels={"dns": "on"}))
    fake_apiserver.add(namespace("hidden"))
    _, rec = make_source(kinds=(NAMESPACE,), namespace_label_selector="dns=on")
    await rec.wait_synced(NAMESPACE)
    assert rec.names(NAMESPACE) == {"shown"}


# --------------------------------------------------------------------------- credentials and stopping


async def test_bearer_token_from_kubeconfig(tmp_path: Path) -> None:
    server = FakeApiServer(token="s3cret").start()
    source = None
    try:
        server.add(service("web"))
        rec = Recorder()
        source = KubeSource(rec, kubeconfig=str(write_kubeconfig(tmp_path / "kc", server.url, token="s3cret")),
                            kinds=(SERVICE,))
        source.start()
        await rec.wait_synced(SERVICE)
        assert server.lists()[0].headers.get("authorization") == "Bearer s3cret"
    finally:
        if source:
            source.stop()
        server.stop()
    assert source_threads() == []


async def test_stop_is_prompt_even_mid_request(fake_apiserver: FakeApiServer, make_source: Callable) -> None:
    fake_apiserver.delay = 3.0  # every answer takes 3 s: the source is stuck waiting for headers
    source, _ = make_source()
    await fake_apiserver.await_for(lambda s: len(s.lists("services")) == 1)

    started = time.monotonic()
    source.stop()
    assert time.monotonic() - started < 1.0
    assert source_threads() == []
    fake_apiserver.delay = 0


# --------------------------------------------------------------------------- quiet or hung


async def test_quiet_watch_is_vouched_for_not_restarted(fake_apiserver: FakeApiServer, make_source: Callable) -> None:
    fake_apiserver.quiet()  # no bookmarks, as a real apiserver on a resource that does not change
    fake_apiserver.add(service("web"))
    restarts = Restarts()
    source, rec = make_source(options=WatchOptions(inactivity_timeout=0.3), on_restart=restarts)
    await rec.wait_synced(SERVICE)
    await fake_apiserver.await_for(lambda s: s.open_watches("services") == 1)
    # Silent far longer than the inactivity timeout: each time, a probe is answered and the watch kept.
    await fake_apiserver.await_for(lambda s: len(s.probes("services")) >= 4, timeout=WAIT)
    assert restarts.calls == [] and dict(source.restarts) == {}
    assert len(fake_apiserver.watches("services")) == 1
    added = fake_apiserver.add(service("api", ip="10.0.0.2"))  # and it still carries changes
    assert await rec.next_events() == [Upsert(svc(added))]
    assert len(fake_apiserver.watches("services")) == 1


async def test_frozen_api_counts_as_lost_contact_and_thawing_catches_up(
    fake_apiserver: FakeApiServer, make_source: Callable
) -> None:
    fake_apiserver.add(service("web"))
    restarts = Restarts()
    options = WatchOptions(inactivity_timeout=0.3, probe_timeout=0.5)
    source, rec = make_source(options=options, on_restart=restarts)
    await rec.wait_synced(SERVICE)
    await fake_apiserver.await_for(lambda s: s.open_watches("services") == 1)

    fake_apiserver.freeze()  # TCP still accepted; nothing answered
    await restarts.wait(SERVICE, "unresponsive")
    contact = source.last_contact
    fake_apiserver.thaw()
    added = fake_apiserver.add(service("api", ip="10.0.0.2"))
    assert Upsert(svc(added)) in await rec.next_events()
    assert source.last_contact > contact
    assert len(fake_apiserver.lists("services")) == 1  # resumed from its resourceVersion: no relist
