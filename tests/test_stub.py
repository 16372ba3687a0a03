"""How glibc and musl react to each answer while walking the search path (the walk's rules, table-driven)."""

import dns.rcode

from clusterdns.searchpath import ResolvConf
from clusterdns.stub import Reply, walk

CONF = ResolvConf(("10.96.0.10",), ("ns.svc.cluster.local", "svc.cluster.local", "cluster.local"), ("ndots:5",))
NX = Reply(dns.rcode.NXDOMAIN)
NODATA = Reply(dns.rcode.NOERROR)


def asker(table: dict, log: list | None = None):
    """Replies by (name, type[, "tcp"]); NXDOMAIN for the rest; None (a timeout) where the table says so."""

    def ask(name, qtype, tcp, timeout):
        if log is not None:
            log.append((name, qtype, "tcp" if tcp else "udp"))
        key = (name, qtype, "tcp") if tcp and (name, qtype, "tcp") in table else (name, qtype)
        return table.get(key, NX)

    return ask


def test_glibc_goes_on_after_nodata_and_musl_stops_there():
    table = {("web.ns.svc.cluster.local.", "A"): NODATA, ("web.ns.svc.cluster.local.", "AAAA"): NODATA,
             ("web.svc.cluster.local.", "A"): Reply(0, ("A 10.0.0.1",))}
    glibc = walk("web", CONF, asker(table))
    assert [s.outcome for s in glibc.steps] == ["next", "answered"] and glibc.winner == 2
    assert glibc.query_count == 4
    musl = walk("web", CONF, asker(table), resolver="musl")
    assert [s.outcome for s in musl.steps] == ["stop"] and musl.winner is None


def test_glibc_goes_on_after_servfail_but_stops_at_refused():
    servfail = walk("web", CONF, asker({("web.ns.svc.cluster.local.", "A"): Reply(dns.rcode.SERVFAIL)}))
    assert len(servfail.steps) == 4 and servfail.steps[0].outcome == "next"
    refused = walk("web", CONF, asker({("web.ns.svc.cluster.local.", "A"): Reply(dns.rcode.REFUSED)}))
    assert [s.outcome for s in refused.steps] == ["stop"]
    assert walk("web", CONF, asker({("web.ns.svc.cluster.local.", "A"): Reply(dns.rcode.SERVFAIL)}), resolver="musl").steps[0].outcome == "stop"


def test_timeouts_use_attempts_and_end_the_lookup():
    log = []
    conf = ResolvConf(CONF.nameservers, CONF.search, ("ndots:5", "attempts:3", "timeout:1"))
    result = walk("web", conf, asker({("web.ns.svc.cluster.local.", "SRV"): None}, log), qtype="SRV")
    assert [(s.queries[0].rcode, s.queries[0].tries) for s in result.steps] == [("TIMEOUT", 3)]
    assert len(log) == 3 and result.winner is None


def test_truncated_answers_are_retried_over_tcp_except_by_old_musl():
    big = ("web.ns.svc.cluster.local.", "A")
    table = {big: Reply(0, (), truncated=True), (*big, "tcp"): Reply(0, ("A 10.0.0.1", "A 10.0.0.2")),
             ("web.ns.svc.cluster.local.", "AAAA"): NODATA}
    log = []
    glibc = walk("web", CONF, asker(table, log))
    assert glibc.winner == 1 and glibc.steps[0].queries[0].transport == "udp+tcp"
    assert ("web.ns.svc.cluster.local.", "A", "tcp") in log
    assert walk("web", CONF, asker(table), resolver="musl").winner == 1
    old = walk("web", CONF, asker(table), resolver="musl-old")
    assert old.winner is None and "truncated" in old.steps[0].queries[0].transport


def test_use_vc_asks_over_tcp_and_no_aaaa_asks_a_only():
    log = []
    walk("web.", ResolvConf(options=("use-vc", "no-aaaa")), asker({}, log))
    assert log == [("web.", "A", "tcp")]


def test_how_the_pair_is_sent_and_why_the_order():
    assert walk("web", CONF, asker({})).sending == "A and AAAA in parallel"
    single = ResolvConf(CONF.nameservers, CONF.search, ("ndots:5", "single-request"))
    assert walk("web", single, asker({})).sending == "A, then AAAA (single-request)"
    reopen = ResolvConf(CONF.nameservers, CONF.search, ("ndots:5", "single-request-reopen"))
    assert "new socket" in walk("web", reopen, asker({})).sending
    assert "exactly as written" in walk("web.", CONF, asker({})).why
    dotted = walk("a.b.c.d.e.f", CONF, asker({}), resolver="musl")
    assert [s.name for s in dotted.steps] == ["a.b.c.d.e.f."] and "as written only" in dotted.why


def test_musl_res_search_uses_no_search_list():
    result = walk("_http._tcp.web", CONF, asker({}), resolver="musl", qtype="SRV")
    assert [s.name for s in result.steps] == ["_http._tcp.web."]
