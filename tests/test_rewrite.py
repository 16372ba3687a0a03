"""rewrite name (clusterdns/rewrite.py): the rules, and the responder wrapped by them."""

from __future__ import annotations

import pytest
from dnslib import DNSRecord

from clusterdns.app import ClusterDNS
from clusterdns.events import Upsert
from clusterdns.rewrite import RewriteError, parse_rewrite, rewrite_name, wrap
from clusterdns.settings import Settings

from .builders import service


@pytest.mark.parametrize(
    "words, asked, rewritten, back",
    [
        ("name exact db.example.org web.default.svc.cluster.local", "db.example.org.", "web.default.svc.cluster.local.", "db.example.org."),
        ("name db.example.org web.default.svc.cluster.local", "db.example.org.", "web.default.svc.cluster.local.", "db.example.org."),
        ("name prefix old- new-", "old-web.example.", "new-web.example.", "old-web.example."),
        ("name suffix .corp.example .default.svc.cluster.local", "web.corp.example.", "web.default.svc.cluster.local.", "web.corp.example."),
        ("name substring .legacy. .default.", "web.legacy.svc.cluster.local.", "web.default.svc.cluster.local.", "web.legacy.svc.cluster.local."),
    ],
)
def test_each_match_type_rewrites_and_reverts(words, asked, rewritten, back):
    rule = parse_rewrite(words.split() + ["answer", "auto"])
    assert rule.apply(asked) == rewritten
    assert rule.revert(rewritten) == back
    assert rule.apply("unrelated.example.") is None


def test_regex_with_groups_and_answer_name():
    rule = parse_rewrite(r"name regex (.*)\.apps\.example\. {1}.default.svc.cluster.local answer name (.*)\.default\.svc\.cluster\.local\. {1}.apps.example".split())
    assert rule.apply("web.apps.example.") == "web.default.svc.cluster.local."
    assert rule.revert("web.default.svc.cluster.local.") == "web.apps.example."


def test_stop_ends_the_walk_and_continue_goes_on():
    rules = (parse_rewrite("continue name prefix a- b-".split()), parse_rewrite("name suffix .x .y".split()),
             parse_rewrite("name suffix .y .z".split()))
    assert rewrite_name(rules, "a-1.x.") == ("b-1.y.", [rules[0], rules[1]])


@pytest.mark.parametrize(
    "words, message",
    [
        ("type A AAAA", "clusterdns rewrites the name only, not type"),
        ("name exact a", "name needs FROM and TO"),
        ("name regex ( b", "bad regular expression"),
        ("name regex (.*) b answer auto", "answer auto with a regex rule"),
        ("name exact a b answer value x y", "unexpected 'answer value x y'"),
    ],
)
def test_rules_clusterdns_cannot_take(words, message):
    with pytest.raises(RewriteError, match=message.replace("(", r"\(")):
        parse_rewrite(words.split())


def make_respond(*rules):
    dns = ClusterDNS(Settings(), implicit_namespaces=("default",))
    dns.sink([Upsert(service("web", cluster_ip="10.96.0.5"))])
    return dns.responder, wrap(dns.responder.respond, tuple(parse_rewrite(r.split()) for r in rules))


def ask(respond, name, qtype="A"):
    response, _, _, _ = respond(bytes(DNSRecord.question(name, qtype).pack()), True)
    return DNSRecord.parse(response)


def test_the_question_comes_back_as_asked_and_answer_auto_renames_the_records():
    _, respond = make_respond("name exact db.example.org web.default.svc.cluster.local answer auto")
    reply = ask(respond, "DB.Example.org")
    assert str(reply.q.qname) == "DB.Example.org."
    assert [(str(rr.rname), str(rr.rdata)) for rr in reply.rr] == [("DB.Example.org.", "10.96.0.5")]


def test_without_answer_auto_the_records_keep_the_rewritten_name_as_in_coredns():
    _, respond = make_respond("name exact db.example.org web.default.svc.cluster.local")
    reply = ask(respond, "db.example.org")
    assert str(reply.q.qname) == "db.example.org."
    assert [str(rr.rname) for rr in reply.rr] == ["web.default.svc.cluster.local."]


def test_no_rules_wraps_nothing_and_unmatched_names_pass_through():
    responder, respond = make_respond()
    assert respond == responder.respond  # the hot path is the responder's own
    _, respond = make_respond("name exact db.example.org web.default.svc.cluster.local answer auto")
    reply = ask(respond, "web.default.svc.cluster.local")
    assert [str(rr.rdata) for rr in reply.rr] == ["10.96.0.5"]


def test_queries_remembered_as_unmatched_stay_bounded_and_correct(monkeypatch):
    import clusterdns.rewrite as rewrite_module

    monkeypatch.setattr(rewrite_module, "MAX_REMEMBERED", 2)
    _, respond = make_respond("name exact db.example.org web.default.svc.cluster.local answer auto")
    for i in range(5):  # more distinct unmatched names than are remembered
        assert ask(respond, f"n{i}.default.svc.cluster.local").header.rcode == 3  # NXDOMAIN, from the zone
        reply = ask(respond, "db.example.org")  # the rule still applies after every clear
        assert [(str(rr.rname), str(rr.rdata)) for rr in reply.rr] == [("db.example.org.", "10.96.0.5")]


async def test_with_autopath_too_a_pod_gets_both_the_search_path_answer_and_the_rewritten_name(tmp_path):
    """The listeners hand the client's address to autopath through the rules around the responder."""
    import asyncio

    import dns.message
    import dns.query

    from clusterdns.serving import ServeOptions, Serving
    from tests.conftest import ZONES
    from tests.test_autopath import PODS

    pods = tmp_path / "pods.yaml"
    pods.write_text(PODS)
    rule = parse_rewrite("name exact db.example.org kubia.default.svc.cluster.local answer auto".split())
    serving = Serving(ServeOptions(settings=Settings(pods="verified", autopath=True), manifests=[str(ZONES), str(pods)],
                                   listen=[("127.0.0.1", 0)], http=None, rewrites=(rule,)))
    await serving.start()
    try:
        assert serving.dns_server is not None
        port = serving.dns_server.addresses[0][1]

        def ask_as_pod(name: str) -> list[str]:  # from the pod's own address (127.0.0.5, in namespace shop)
            reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, source="127.0.0.5",
                                  timeout=5)
            return [rrset.to_text() for rrset in reply.answer]

        searched = await asyncio.to_thread(ask_as_pod, "kubia.default.shop.svc.cluster.local.")
        rewritten = await asyncio.to_thread(ask_as_pod, "db.example.org.")
    finally:
        await serving.close()
    assert searched == ["kubia.default.shop.svc.cluster.local. 5 IN CNAME kubia.default.svc.cluster.local.",
                        "kubia.default.svc.cluster.local. 5 IN A 10.96.100.10"]
    assert rewritten == ["db.example.org. 5 IN A 10.96.100.10"]
