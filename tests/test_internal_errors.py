"""An internal error answering a query: SERVFAIL to the client, counted, logged once per burst with a count."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

import clusterdns.wire
from clusterdns.serving import ServeOptions, Serving

ZONES = Path(__file__).resolve().parent.parent / "zones"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def serving(monkeypatch):
    real_respond = clusterdns.wire.Responder.respond

    def faulty(self, data, udp):
        # Fault injection: a bug that hits one shape of query (names starting "boom").
        if data[13:17] == b"boom":
            raise RuntimeError("cannot answer boom")
        return real_respond(self, data, udp)

    monkeypatch.setattr(clusterdns.wire.Responder, "respond", faulty)
    serving = Serving(ServeOptions(manifests=[str(ZONES)], listen=[("127.0.0.1", 0)], http=("127.0.0.1", 0)))
    await serving.start()
    yield serving
    await serving.close()


async def test_a_burst_of_internal_errors_is_one_line_then_a_count(serving, caplog):
    clock = Clock()
    serving.dns_server.errors.clock = clock
    host, port = serving.dns_server.addresses[0]
    caplog.set_level(logging.ERROR, logger="clusterdns.server")

    for i in range(5):  # different names, so none is a cache hit
        query = dns.message.make_query(f"boom{i}.default.svc.cluster.local", "A")
        reply = await dns.asyncquery.udp(query, host, port=port, timeout=2)  # dnspython checks the question
        assert reply.rcode() == dns.rcode.SERVFAIL
    reply = await dns.asyncquery.tcp(dns.message.make_query("boom9.example", "A"), host, port=port, timeout=2)
    assert reply.rcode() == dns.rcode.SERVFAIL
    # the TCP connection and the server go on answering
    ok = await dns.asyncquery.udp(dns.message.make_query("kubia.default.svc.cluster.local", "A"), host, port=port)
    assert ok.rcode() == dns.rcode.NOERROR

    records = [r for r in caplog.records if r.name == "clusterdns.server"]
    assert len(records) == 2, [r.getMessage() for r in records]  # one per transport
    udp, tcp = records
    assert re.match(r"internal error answering a UDP query from 127\.0\.0\.1 port \d+: RuntimeError: cannot", udp.getMessage())
    assert tcp.getMessage().startswith("internal error answering a TCP query from 127.0.0.1 port ")
    assert udp.exc_info is not None and tcp.exc_info is not None  # one traceback per burst, to find the bug

    clock.now += 31
    serving.dns_server.errors.flush()
    records = [r for r in caplog.records if r.name == "clusterdns.server"]
    assert len(records) == 3  # the UDP burst's count; the TCP burst had no repeats
    assert re.match(r"4 more like this in the last 31s; latest: internal error answering a UDP query", records[2].getMessage())

    text = serving.metrics.exposition().decode()
    assert re.search(r"^coredns_panics_total 6\.0$", text, re.M), text
