"""The HTTP listener, through real sockets on 127.0.0.1 (and ::1 when the host has it)."""

from __future__ import annotations

import asyncio
import http.client
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clusterdns.http import HttpServer, start_http
from clusterdns.metrics import SIZE_BUCKETS, TIME_BUCKETS, Metrics

SERVER = "dns://127.0.0.1:53"


class Readiness:
    """A readiness callable a test can flip."""

    def __init__(self) -> None:
        self.ready = False
        self.reason = "waiting for first sync of Pod"

    def __call__(self) -> tuple[bool, str]:
        return self.ready, self.reason


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(SERVER, version="9.9.9", revision="abc123")


@pytest.fixture
def readiness() -> Readiness:
    return Readiness()


@pytest.fixture
async def server(metrics, readiness):
    srv = await start_http("127.0.0.1", 0, metrics, readiness)
    yield srv
    await srv.close()


def _request(host: str, port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


async def get(srv: HttpServer, path: str, method: str = "GET", host: str = "127.0.0.1"):
    """(status, lower-cased headers, body) of one request made with http.client."""
    return await asyncio.to_thread(_request, host, srv.port, method, path)


async def raw(srv: HttpServer, data: bytes, eof: bool = False) -> bytes:
    """Send ``data`` as is and return everything the server sends until it closes (b"" if reset)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(data)
        if eof:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, keyed by (sample name, its labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(**kw: str) -> frozenset:
    return frozenset(kw.items())


# --- /health and /ready -------------------------------------------------------


async def test_health_is_ok(server):
    status, headers, body = await get(server, "/health")
    assert (status, body) == (200, b"OK")
    assert headers["content-type"].startswith("text/plain")
    assert headers["connection"] == "close"


async def test_ready_flips_from_503_to_200(server, readiness):
    status, _, body = await get(server, "/ready")
    assert status == 503
    assert body.decode().strip() == "waiting for first sync of Pod"

    readiness.ready = True
    status, _, body = await get(server, "/ready")
    assert (status, body) == (200, b"OK")

    readiness.ready, readiness.reason = False, "shutting down"
    status, _, body = await get(server, "/ready")
    assert (status, body.strip()) == (503, b"shutting down")


async def test_ready_check_that_raises_is_not_ready(metrics):
    def broken() -> tuple[bool, str]:
        raise RuntimeError("store gone")

    srv = await start_http("127.0.0.1", 0, metrics, broken)
    try:
        status, _, body = await get(srv, "/ready")
    finally:
        await srv.close()
    assert status == 503
    assert b"store gone" in body


# --- /metrics -----------------------------------------------------------------


async def test_metrics_use_coredns_names_labels_and_counts(server, metrics):
    zone = "cluster.local."
    metrics.observe_query("udp", "1", "A", "NOERROR", 0.0003, 40, 90, zone, False)
    metrics.observe_query("udp", "1", 1, 0, 0.0001, 40, 90, zone, True)  # codes as numbers
    metrics.observe_query("udp", "1", "AAAA", "NXDOMAIN", 0.0002, 45, 140, zone, True)
    metrics.observe_query("tcp", "2", "SRV", "NOERROR", 0.02, 50, 700, zone, False, dnssec_ok=True)
    metrics.observe_query("udp", "1", "TYPE65280", "SERVFAIL", 3.0, 30, 30, ".", None, plugin="forward")

    status, headers, body = await get(server, "/metrics")
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    got = samples(body.decode())
    base = {"server": SERVER, "view": ""}

    def value(name: str, **kw: str) -> float | None:
        return got.get((name, labels(**base, **kw)))

    # coredns_dns_requests_total{server, zone, view, proto, family, type}
    assert value("coredns_dns_requests_total", zone=zone, proto="udp", family="1", type="A") == 2
    assert value("coredns_dns_requests_total", zone=zone, proto="udp", family="1", type="AAAA") == 1
    assert value("coredns_dns_requests_total", zone=zone, proto="tcp", family="2", type="SRV") == 1
    assert value("coredns_dns_requests_total", zone=".", proto="udp", family="1", type="other") == 1
    # coredns_dns_responses_total{server, zone, view, rcode, plugin}: cache hits are the cache's.
    assert value("coredns_dns_responses_total", zone=zone, rcode="NOERROR", plugin="kubernetes") == 2
    assert value("coredns_dns_responses_total", zone=zone, rcode="NOERROR", plugin="cache") == 1
    assert value("coredns_dns_responses_total", zone=zone, rcode="NXDOMAIN", plugin="cache") == 1
    assert value("coredns_dns_responses_total", zone=".", rcode="SERVFAIL", plugin="forward") == 1
    assert value("coredns_dns_do_requests_total", zone=zone) == 1

    # coredns_dns_request_duration_seconds{server, zone, view, type}, CoreDNS's buckets.
    a = {"zone": zone, "type": "A"}
    assert value("coredns_dns_request_duration_seconds_count", **a) == 2
    assert value("coredns_dns_request_duration_seconds_sum", **a) == pytest.approx(0.0004)
    assert value("coredns_dns_request_duration_seconds_bucket", **a, le="0.00025") == 1
    assert value("coredns_dns_request_duration_seconds_bucket", **a, le="0.0005") == 2
    assert value("coredns_dns_request_duration_seconds_bucket", **a, le="+Inf") == 2
    les = sorted(
        float(dict(k[1])["le"]) for k in got
        if k[0] == "coredns_dns_request_duration_seconds_bucket" and dict(k[1])["type"] == "A"
    )
    assert les == [*TIME_BUCKETS, float("inf")]
    assert TIME_BUCKETS[0] == 0.00025 and TIME_BUCKETS[-1] == 8.192
    slow = {"zone": ".", "type": "other"}
    assert value("coredns_dns_request_duration_seconds_bucket", **slow, le="2.048") == 0
    assert value("coredns_dns_request_duration_seconds_bucket", **slow, le="4.096") == 1

    # sizes{server, zone, view, proto}
    assert value("coredns_dns_request_size_bytes_count", zone=zone, proto="udp") == 3
    assert value("coredns_dns_request_size_bytes_sum", zone=zone, proto="udp") == 125
    assert value("coredns_dns_response_size_bytes_bucket", zone=zone, proto="tcp", le="511.0") == 0
    assert value("coredns_dns_response_size_bytes_bucket", zone=zone, proto="tcp", le="1023.0") == 1
    les = {
        float(dict(k[1])["le"]) for k in got
        if k[0] == "coredns_dns_response_size_bytes_bucket" and dict(k[1])["proto"] == "tcp"
    }
    assert les == {*map(float, SIZE_BUCKETS), float("inf")}

    # cache{server, [type,] zones, view}
    assert value("coredns_cache_hits_total", type="success", zones=".") == 1
    assert value("coredns_cache_hits_total", type="denial", zones=".") == 1
    assert value("coredns_cache_misses_total", zones=".") == 2
    assert value("coredns_cache_requests_total", zones=".") == 4
    assert value("coredns_cache_entries", type="success", zones=".") == 0

    build = [k for k in got if k[0] == "coredns_build_info"]
    assert len(build) == 1
    info = dict(build[0][1])
    assert (info["version"], info["revision"]) == ("9.9.9", "abc123")
    assert info["goversion"].startswith("python3.")
    assert got[("coredns_panics_total", frozenset())] == 0
    assert not [k for k in got if k[0].endswith("_created")]


async def test_metrics_show_cluster_and_source_state(server, metrics):
    metrics.set_objects("Service", 12)
    metrics.set_zone_records(345)
    metrics.set_zone_serial(7)
    metrics.count_watch_restart("Pod", "expired")
    metrics.count_watch_relist("Pod")
    metrics.mark_synced("Pod", at=1_700_000_000.0)
    metrics.count_manifest_error(2)
    metrics.set_cache_entries(5, "denial")
    metrics.count_panic()

    text = (await get(server, "/metrics"))[2].decode()
    got = samples(text)
    assert got[("clusterdns_objects", labels(kind="Service"))] == 12
    assert got[("clusterdns_objects", labels(kind="Pod"))] == 0  # every kind present from the start
    assert got[("clusterdns_zone_records", frozenset())] == 345
    assert got[("clusterdns_zone_serial", frozenset())] == 7
    assert got[("clusterdns_watch_restarts_total", labels(kind="Pod", reason="expired"))] == 1
    assert got[("clusterdns_watch_relists_total", labels(kind="Pod"))] == 1
    assert got[("clusterdns_last_sync_timestamp_seconds", labels(kind="Pod"))] == 1_700_000_000.0
    assert got[("clusterdns_manifest_errors_total", frozenset())] == 2
    assert got[("coredns_cache_entries", labels(server=SERVER, type="denial", zones=".", view=""))] == 5
    assert got[("coredns_panics_total", frozenset())] == 1
    assert metrics.sync_age("Pod", now=1_700_000_030.0) == 30.0
    assert metrics.sync_age("Service") is None

    # Absent until an API source reports, so manifest-only servers do not look cut off.
    assert "clusterdns_api_reachable" not in text
    metrics.set_api_reachable(False)
    got = samples((await get(server, "/metrics"))[2].decode())
    assert got[("clusterdns_api_reachable", frozenset())] == 0


async def test_each_metrics_has_its_own_registry(server, metrics):
    other = Metrics(SERVER)
    other.observe_query("udp", "1", "A", "NOERROR", 0.001, 40, 90, "cluster.local.")
    got = samples((await get(server, "/metrics"))[2].decode())
    assert not [k for k in got if k[0] == "coredns_dns_requests_total"]


# --- HTTP handling ----------------------------------------------------------------


async def test_unknown_path_is_404(server):
    for path in ("/", "/healthz", "/metrics/", "/ready/x"):
        status, _, _ = await get(server, path)
        assert status == 404, path


async def test_query_string_and_absolute_form_are_understood(server):
    assert (await get(server, "/health?verbose=1"))[0] == 200
    response = await raw(server, b"GET http://example/health HTTP/1.1\r\nHost: example\r\n\r\n")
    assert status_of(response) == 200


async def test_head_gets_the_head_without_body(server):
    status, headers, body = await get(server, "/health", method="HEAD")
    assert (status, headers["content-length"], body) == (200, "2", b"")
    for path, expected in (("/metrics", 200), ("/ready", 503), ("/nope", 404)):
        response = await raw(server, f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head, _, rest = response.partition(b"\r\n\r\n")
        assert status_of(response) == expected
        assert int(dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])[b"Content-Length"]) > 0
        assert rest == b""


async def test_other_methods_are_405(server):
    status, headers, _ = await get(server, "/health", method="POST")
    assert status == 405
    assert headers["allow"] == "GET, HEAD"
    # A body the server never reads still gets its answer.
    body = b"x" * 200_000
    response = await raw(server, b"POST /ready HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert status_of(response) == 405


@pytest.mark.parametrize(
    "request_bytes, eof",
    [
        (b"garbage\r\n\r\n", False),
        (b"GET /health\r\n\r\n", False),
        (b"GET /health HTTP/2.0\r\n\r\n", False),
        (b"GET /health  HTTP/1.1\r\n\r\n", False),
        (b"GET health HTTP/1.1\r\n\r\n", False),
        (b"G(T /health HTTP/1.1\r\n\r\n", False),
        (b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n", False),
        (b"GET /health HTTP/1.1\r\n folded: header\r\n\r\n", False),
        (b"GET /health HTTP/1.1\r\nX-Long: " + b"a" * 10_000 + b"\r\n\r\n", False),
        (b"GET /health HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", False),
        (b"GET /health HTTP/1.1\r\nHost: x\r\n", True),  # ends before the blank line
    ],
)
async def test_malformed_requests_are_400(server, request_bytes, eof):
    response = await raw(server, request_bytes, eof=eof)
    assert status_of(response) == 400
    assert b"Connection: close" in response


async def connections(srv, count: int, timeout: float = 5.0) -> None:
    """Wait (bounded) until the server holds ``count`` open connections."""
    async def held():
        while len(srv._tasks) != count:
            await asyncio.sleep(0)
    await asyncio.wait_for(held(), timeout)


async def test_a_client_too_slow_to_send_its_request_is_dropped(metrics, readiness):
    srv = await start_http("127.0.0.1", 0, metrics, readiness, read_timeout=0.2)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"GET /health HTTP/1.1\r\n")  # and never the rest
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        # The server still answers others.
        assert (await get(srv, "/health"))[0] == 200
    finally:
        await srv.close()


async def test_at_the_limit_a_new_connection_closes_the_slowest_reader(metrics, readiness):
    srv = await start_http("127.0.0.1", 0, metrics, readiness, max_connections=2)
    try:
        first = await asyncio.open_connection("127.0.0.1", srv.port)
        await connections(srv, 1)
        second = await asyncio.open_connection("127.0.0.1", srv.port)
        await connections(srv, 2)
        assert status_of(await raw(srv, b"GET /health HTTP/1.1\r\n\r\n")) == 200
        assert await asyncio.wait_for(first[0].read(), 5) == b""  # the one waiting longest was closed
        second[1].write(b"GET /health HTTP/1.1\r\n\r\n")  # the other is still served
        assert status_of(await asyncio.wait_for(second[0].read(), 5)) == 200
        for _, writer in (first, second):
            writer.close()
    finally:
        await srv.close()


def _slow_loris(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that have sent part of a request head, and keep it coming slowly."""
    socks = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /health HTTP/1.1\r\nX-Slow-%d: " % i)
        socks.append(sock)
    return socks


def _probe(port: int) -> int:
    return _request("127.0.0.1", port, "GET", "/health")[0]


async def test_slow_loris_cannot_make_liveness_probes_fail(metrics, readiness):
    """Slow clients in every slot: each /health probe (a new connection, kubelet's 1 s timeout) still gets 200."""
    srv = await start_http("127.0.0.1", 0, metrics, readiness, max_connections=8)
    slow = await asyncio.to_thread(_slow_loris, srv.port, 8)
    try:
        await connections(srv, 8)
        for sock in slow:  # they are still sending, a byte at a time
            sock.send(b"x")
        statuses = [await asyncio.to_thread(_probe, srv.port) for _ in range(20)]
        assert statuses == [200] * 20
    finally:
        for sock in slow:
            sock.close()
        await srv.close()


async def test_close_drops_connections_and_leaves_no_tasks(metrics, readiness):
    srv = await start_http("127.0.0.1", 0, metrics, readiness)
    port = srv.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\n")  # a request in progress
    await connections(srv, 1)

    await srv.close()

    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this host")
@pytest.mark.parametrize("host", ["::1", "[::1]"])
async def test_ipv6_host(metrics, readiness, host):
    srv = await start_http(host, 0, metrics, readiness)
    try:
        status, _, body = await get(srv, "/health", host="::1")
    finally:
        await srv.close()
    assert (status, body) == (200, b"OK")



async def test_zone_view_only_for_allowed_clients(metrics, readiness):
    from clusterdns.acl import parse_networks

    srv = await start_http("127.0.0.1", 0, metrics, readiness, zone_view=lambda: {"names": {}},
                           zone_clients=parse_networks("127.0.0.2/32", "test"))
    try:
        status, _, body = await get(srv, "/zone")
        assert status == 403 and b"--http-debug-from" in body
    finally:
        await srv.close()
