"""Forwarding and its cache, end to end: a real clusterdns server in front of real upstreams on 127.0.0.1."""

from __future__ import annotations

import concurrent.futures
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clusterdns.forward import ForwardSettings, Stub
from clusterdns.metrics import Metrics

from .conftest import ZONES
from .dnsserver import RunningServer, answers
from .upstreams import DnslibUpstream, FakeUpstream, dead_address

FAST = dict(try_timeout=0.5, timeout=1.0, health_check=0.05, loop_check=False)  # test-sized timeouts


def settings(*upstreams, **kwargs) -> ForwardSettings:
    addresses = tuple(u if isinstance(u, tuple) else (u.host, u.port) for u in upstreams)
    return ForwardSettings(upstreams=addresses, **{**FAST, **kwargs})


def wait_until(check, timeout: float = 5.0) -> None:
    """Poll ``check`` until it is true (bounded); for state that has no event to await."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@pytest.fixture
def upstream():
    with FakeUpstream() as server:
        yield server


def test_a_name_is_forwarded_then_answered_from_the_cache(upstream):
    with RunningServer([ZONES], forward=settings(upstream)) as server:
        first = server.query("www.example.com", "A")
        second = server.query("www.example.com", "A")
    assert first.rcode() == dns.rcode.NOERROR
    assert answers(first, "A") == ["192.0.2.10"] and answers(first, "CNAME") == ["example.com."]
    assert answers(second) == answers(first)
    assert upstream.count("www.example.com.") == 1  # the second came from the cache
    cname_ttl, a_ttl = (rrset.ttl for rrset in second.answer)
    assert 110 < cname_ttl <= 120 and 290 < a_ttl <= 300  # each record keeps its own TTL
    assert first.flags & dns.flags.RA and second.flags & dns.flags.RA


def test_the_dnslib_upstream_answers_through_the_forwarder():
    with DnslibUpstream() as upstream, RunningServer([ZONES], forward=settings(upstream)) as server:
        udp = server.query("example.com", "AAAA")
        tcp = server.query("example.com", "A", tcp=True)
    assert answers(udp) == ["2001:db8::10"]
    assert answers(tcp) == ["192.0.2.10"]


def test_twenty_concurrent_identical_questions_make_one_upstream_query():
    with FakeUpstream(hold=True) as upstream, RunningServer([ZONES], forward=settings(upstream)) as server:
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            replies = [pool.submit(server.query, "example.com", "A") for _ in range(20)]
            wait_until(lambda: server.forwarder.waiting == 20)  # all 20 are in, waiting on one resolution
            upstream.release()
            results = [r.result(5) for r in replies]
    assert [answers(r) for r in results] == [["192.0.2.10"]] * 20
    assert upstream.count("example.com.", "A") == 1


def test_nxdomain_is_cached_for_the_soa_minimum(upstream):
    with RunningServer([ZONES], forward=settings(upstream)) as server:
        first = server.query("no-such-name.example.com", "A")
        second = server.query("no-such-name.example.com", "A")
        entry, fresh = server.forwarder.cache.get(
            b"\x0cno-such-name\x07example\x03com\x00\x00\x01\x00\x01" + bytes((False, False))
        )
    assert first.rcode() == second.rcode() == dns.rcode.NXDOMAIN
    assert upstream.count("no-such-name.example.com.") == 1
    assert fresh and entry.expires - entry.stored == 30  # min(SOA TTL 3600, MINIMUM 30)
    soa = first.authority[0]
    assert soa.rdtype == dns.rdatatype.SOA and soa.ttl == 30
    assert second.authority[0].ttl <= 30


def test_ttls_count_down_in_cached_answers(upstream):
    clock = FakeClock()
    with RunningServer([ZONES], forward=settings(upstream), clock=clock) as server:
        server.query("example.com", "A")
        clock.now += 100
        later = server.query("example.com", "A")
        clock.now += 250  # past the 300 s TTL: asked again
        again = server.query("example.com", "A")
    assert later.answer[0].ttl == 200
    assert again.answer[0].ttl == 300
    assert upstream.count("example.com.") == 2


def test_a_truncated_reply_is_retried_over_tcp_on_a_reused_connection():
    with FakeUpstream(truncate_udp=True) as upstream, RunningServer([ZONES], forward=settings(upstream)) as server:
        big = server.query("many.example.com", "TXT", use_edns=0, payload=4096)
        small = server.query("example.com", "A")
        in_512 = server.query("many.example.com", "TXT")  # no EDNS: 512 bytes, too small for seven TXT
        over_tcp = server.query("many.example.com", "TXT", tcp=True)
    assert len(big.answer[0]) == 7 and not big.flags & dns.flags.TC
    assert answers(small) == ["192.0.2.10"]
    assert in_512.flags & dns.flags.TC and not in_512.answer
    assert len(over_tcp.answer[0]) == 7
    assert [p for n, _, p in upstream.asked if n == "many.example.com."] == ["udp", "tcp"]  # then cached
    assert upstream.tcp_connections == 1  # the second TCP query reused the first connection


def test_idle_tcp_connections_to_an_upstream_are_closed():
    with FakeUpstream(truncate_udp=True) as upstream, \
            RunningServer([ZONES], forward=settings(upstream, tcp_idle=0.1)) as server:
        server.query("example.com", "A")
        pooled = server.forwarder.upstreams[0]
        assert server.call(lambda: pooled.idle_connections) == 1
        wait_until(lambda: server.call(lambda: pooled.idle_connections) == 0)


def test_a_dead_first_upstream_fails_over_to_the_second_and_is_skipped(upstream):
    dead = dead_address()
    with RunningServer([ZONES], forward=settings(dead, upstream, policy="sequential")) as server:
        first = server.query("example.com", "A")
        dead_upstream = server.forwarder.upstreams[0]
        assert not dead_upstream.healthy
        tries = server.forwarder.stats.upstream_queries
        second = server.query("db.example.com", "A")
        assert server.forwarder.stats.upstream_queries == tries + 1  # the dead one was skipped
    assert answers(first) == ["192.0.2.10"] and answers(second) == ["192.0.2.20"]


def test_a_failed_upstream_is_used_again_once_its_health_check_answers():
    revived = FakeUpstream().start()
    address = (revived.host, revived.port)
    revived.stop()  # its port is now closed
    with FakeUpstream() as other, \
            RunningServer([ZONES], forward=settings(address, other, policy="sequential")) as server:
        server.query("example.com", "A")
        first = server.forwarder.upstreams[0]
        assert not first.healthy
        with FakeUpstream(port=address[1]) as back:
            wait_until(lambda: first.healthy)
            assert server.query("db.example.com", "A").rcode() == dns.rcode.NOERROR
            assert back.count(".", "NS") >= 1  # the health check: ". IN NS"
            assert back.count("db.example.com.") == 1


def test_all_upstreams_dead_gives_servfail_within_the_bound():
    with RunningServer([ZONES], forward=settings(dead_address(), dead_address())) as server:
        reply = server.query("example.com", "A")  # the client gives up after 3 s: the bound is 1 s here
    assert reply.rcode() == dns.rcode.SERVFAIL and reply.flags & dns.flags.RA


def test_a_slow_upstream_times_out_and_the_next_one_answers(upstream):
    with FakeUpstream(delay=3.0) as slow, \
            RunningServer([ZONES], forward=settings(slow, upstream, policy="sequential", try_timeout=0.3)) as server:
        reply = server.query("example.com", "A")
    assert answers(reply) == ["192.0.2.10"]
    assert slow.count("example.com.") == 1 and upstream.count("example.com.") == 1


def test_a_slow_only_upstream_gives_servfail_not_silence():
    with FakeUpstream(delay=3.0) as slow, \
            RunningServer([ZONES], forward=settings(slow, try_timeout=0.3, timeout=0.5)) as server:
        reply = server.query("example.com", "A", tcp=True)
    assert reply.rcode() == dns.rcode.SERVFAIL


def test_stub_domains_go_to_their_own_upstreams_most_specific_first(upstream):
    with FakeUpstream() as corp, FakeUpstream() as app:
        forward = settings(
            upstream, stubs=(Stub("corp.example.", ((corp.host, corp.port),)), Stub("app.corp.example.", ((app.host, app.port),)))
        )
        with RunningServer([ZONES], forward=forward) as server:
            in_app = server.query("app.corp.example", "A")
            in_corp = server.query("other.corp.example", "A")
            outside = server.query("example.com", "A")
    assert answers(in_app) == ["198.51.100.7"]
    assert in_corp.rcode() == dns.rcode.NXDOMAIN and in_corp.authority[0].ttl == 20
    assert answers(outside) == ["192.0.2.10"]
    assert app.questions() == {("app.corp.example.", "A"): 1}
    assert corp.questions() == {("other.corp.example.", "A"): 1}
    assert upstream.questions() == {("example.com.", "A"): 1}


EXTERNAL = """
apiVersion: v1
kind: Service
metadata: {name: gone, namespace: default}
spec: {type: ExternalName, externalName: gone.example.com}
---
apiVersion: v1
kind: Service
metadata: {name: inside, namespace: default}
spec: {type: ExternalName, externalName: kubia.default.svc.cluster.local}
"""


@pytest.fixture
def external_zones(tmp_path):
    (tmp_path / "external.yaml").write_text(EXTERNAL)
    return [ZONES, tmp_path]


def test_an_external_name_is_chased_upstream(upstream, external_zones):
    with RunningServer(external_zones, forward=settings(upstream)) as server:
        reply = server.query("my-service.default.svc.cluster.local", "A")
        missing = server.query("gone.default.svc.cluster.local", "A")
        inside = server.query("inside.default.svc.cluster.local", "A")
    assert [(str(r.name), dns.rdatatype.to_text(r.rdtype)) for r in reply.answer] == [
        ("my-service.default.svc.cluster.local.", "CNAME"), ("my.database.example.com.", "A")
    ]
    assert answers(reply, "A") == ["192.0.2.40"] and reply.flags & dns.flags.RA
    assert missing.rcode() == dns.rcode.NXDOMAIN and answers(missing) == ["gone.example.com."]
    assert answers(inside, "A") == ["10.96.100.10"]  # a cluster target is answered from the zone
    assert upstream.questions() == {("my.database.example.com.", "A"): 1, ("gone.example.com.", "A"): 1}


def test_an_external_name_whose_upstream_fails_answers_the_cname_alone(external_zones):
    with RunningServer(external_zones, forward=settings(dead_address())) as server:
        reply = server.query("my-service.default.svc.cluster.local", "A")
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert answers(reply) == ["my.database.example.com."]


def test_cluster_names_never_reach_an_upstream(upstream):
    with RunningServer([ZONES], forward=settings(upstream)) as server:
        known = server.query("kubia.default.svc.cluster.local", "A")
        missing = server.query("nothing-here.default.svc.cluster.local", "A")
        tcp = server.query("nothing.cluster.local", "AAAA", tcp=True)
        reverse = server.query("10.0.96.10.in-addr.arpa", "PTR")
        foreign_reverse = server.query("10.2.0.192.in-addr.arpa", "PTR")
    assert answers(known) == ["10.96.100.10"] and known.flags & dns.flags.RA and known.flags & dns.flags.AA
    assert missing.rcode() == tcp.rcode() == dns.rcode.NXDOMAIN
    assert answers(reverse) == ["kube-dns.kube-system.svc.cluster.local."]
    assert answers(foreign_reverse) == ["example.com."]  # the cluster does not own it: forwarded
    assert upstream.questions() == {("10.2.0.192.in-addr.arpa.", "PTR"): 1}


def test_without_forwarding_outside_names_are_refused_and_ra_is_clear():
    with RunningServer([ZONES]) as server:
        outside = server.query("example.com", "A")
        inside = server.query("kubia.default.svc.cluster.local", "A")
    assert outside.rcode() == dns.rcode.REFUSED
    assert not inside.flags & dns.flags.RA


@pytest.mark.parametrize("tcp", [False, True])
def test_id_and_question_case_are_echoed(upstream, tcp):
    with RunningServer([ZONES], forward=settings(upstream)) as server:
        replies = []
        for name in ("ExAmPlE.CoM", "eXaMpLe.cOm"):  # a miss, then a cache hit
            q = dns.message.make_query(name, "A", id=4242 if name[0] == "E" else 777)
            raw = (dns.query.tcp if tcp else dns.query.udp)(q, server.host, port=server.port, timeout=3)
            replies.append((q, raw))
    for q, reply in replies:
        assert reply.id == q.id
        assert reply.question[0].name.to_text() == q.question[0].name.to_text()
        assert reply.answer[0].name.to_text() == q.question[0].name.to_text()  # compressed onto the question
        assert reply.flags & dns.flags.RD and reply.flags & dns.flags.RA


def test_do_and_cd_bits_go_upstream_and_edns_comes_back(upstream):
    with RunningServer([ZONES], forward=settings(upstream)) as server:
        reply = server.query("example.com", "A", want_dnssec=True)
        plain = server.query("example.com", "A")
    assert reply.edns == 0 and reply.ednsflags & dns.flags.DO and reply.payload == 1232
    assert plain.edns == -1  # no OPT to a client that sent none
    assert upstream.count("example.com.") == 2  # DO changes the answer upstream: cached apart


def test_past_max_concurrent_queries_are_refused_at_once():
    with FakeUpstream(hold=True) as upstream, \
            RunningServer([ZONES], forward=settings(upstream, max_concurrent=1)) as server:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(server.query, "example.com", "A")
            wait_until(lambda: server.forwarder.waiting == 1)
            refused = server.query("db.example.com", "A")
            upstream.release()
            assert answers(waiting.result(5)) == ["192.0.2.10"]
        assert server.forwarder.stats.rejected == 1
    assert refused.rcode() == dns.rcode.REFUSED


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("stale", [0.0, 3600.0])
def test_serve_stale_answers_an_expired_entry_when_upstreams_fail(stale):
    clock = FakeClock()
    upstream = FakeUpstream().start()
    try:
        with RunningServer([ZONES], forward=settings(upstream, serve_stale=stale), clock=clock) as server:
            server.query("short.example.com", "A")  # TTL 1
            upstream.stop()
            clock.now += 60
            reply = server.query("short.example.com", "A")
    finally:
        upstream.stop()
    if stale:
        assert answers(reply) == ["192.0.2.30"] and reply.answer[0].ttl == 0
    else:
        assert reply.rcode() == dns.rcode.SERVFAIL


def test_forward_metrics_use_coredns_names(upstream):
    metrics = Metrics(process_metrics=False)
    dead = dead_address()
    with RunningServer([ZONES], forward=settings(dead, upstream, policy="sequential"), metrics=metrics) as server:
        server.query("example.com", "A")
        server.query("example.com", "A")
        wait_until(lambda: _sample(metrics, "coredns_forward_healthcheck_failures_total", to=f"{dead[0]}:{dead[1]}"))
    to = upstream.address
    assert _sample(metrics, "coredns_forward_requests_total", to=to) == 1
    assert _sample(metrics, "coredns_forward_responses_total", to=to, rcode="NOERROR") == 1
    assert _sample(metrics, "coredns_forward_request_duration_seconds_count", to=to, rcode="NOERROR") == 1
    assert _sample(metrics, "coredns_forward_requests_total", to=f"{dead[0]}:{dead[1]}") == 1
    assert _sample(metrics, "coredns_dns_requests_total", zone=".", type="A") == 2
    assert _sample(metrics, "coredns_dns_responses_total", zone=".", plugin="forward", rcode="NOERROR") == 1
    assert _sample(metrics, "coredns_dns_responses_total", zone=".", plugin="cache", rcode="NOERROR") == 1
    assert _sample(metrics, "coredns_cache_hits_total", type="success") == 1
    assert _sample(metrics, "coredns_cache_misses_total") == 1


def _sample(metrics: Metrics, name: str, **labels) -> float:
    total = 0.0
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_a_cname_chain_through_the_upstream_stops_after_eight_steps(tmp_path):
    from .upstreams import RECORDS, _table

    chain = "\n".join(f"c{i}.example.com. 60 IN CNAME c{i + 1}.example.com." for i in range(1, 12))
    records = {**RECORDS, **_table(chain + "\nc12.example.com. 60 IN A 192.0.2.99")}
    (tmp_path / "long.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: long, namespace: default}\n"
        "spec: {type: ExternalName, externalName: c1.example.com}\n"
    )
    with FakeUpstream(records=records) as upstream, RunningServer([ZONES, tmp_path], forward=settings(upstream)) as server:
        reply = server.query("long.default.svc.cluster.local", "A")
    cnames = [r for r in reply.answer if r.rdtype == dns.rdatatype.CNAME]
    assert len(cnames) == 8 and not answers(reply, "A")  # the cluster's CNAME and seven from upstream, then it stops


@pytest.mark.parametrize("tcp", [False, True])
def test_an_internal_error_while_forwarding_answers_servfail_not_silence(upstream, tcp):
    with RunningServer([ZONES], forward=settings(upstream)) as server:
        async def broken(data, udp):
            raise RuntimeError("injected fault")

        server.forwarder.forward = broken  # fault injection in our own code, on the instance only
        reply = server.query("example.com", "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.SERVFAIL
