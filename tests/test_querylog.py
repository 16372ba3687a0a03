"""--log-queries: CoreDNS's log line for real queries over UDP and TCP, classes, and nothing when off."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rrset
import pytest

from clusterdns.cli import build_parser, serve_options, settings_from
from clusterdns.querylog import _seconds, format_line, parse_classes, response_class
from clusterdns.server import _LoggingObserver, _Observer
from clusterdns.serving import Serving

ZONES = Path(__file__).resolve().parent.parent / "zones"
DURATION = r"0\.\d+s"  # Go's FormatFloat(secs, 'f', -1): fixed notation, shortest digits


@pytest.fixture
def serve(serve_zones):
    return serve_zones


async def udp_exchange(serving: Serving, query: dns.message.Message) -> tuple[int, bytes, bytes]:
    """Send from a socket of our own, so the log's port is known: (our port, query bytes, response bytes)."""
    host, port = serving.dns_server.addresses[0]
    wire = query.to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(sock, wire, (host, port))
        response, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), 2)
        return sock.getsockname()[1], wire, response


def lines(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


async def test_the_line_for_a_udp_query_is_coredns_format(serve, capsys):
    serving = await serve(log_queries=frozenset({"all"}))
    query = dns.message.make_query("Kubia.Default.svc.cluster.local", "A", id=4352)
    port, sent, received = await udp_exchange(serving, query)
    [line] = lines(capsys)
    expected = (
        rf'\[INFO\] 127\.0\.0\.1:{port} - 4352 "A IN kubia\.default\.svc\.cluster\.local\. udp {len(sent)} false 512" '
        rf"NOERROR qr,aa,rd {len(received)} {DURATION}"
    )
    assert re.fullmatch(expected, line), line
    assert len(sent) == 49 and len(received) == 65  # the name's 33 bytes + header + question, one A


async def test_tcp_edns_do_and_negative_answers(serve, capsys):
    serving = await serve(log_queries=frozenset({"all"}))
    host, port = serving.dns_server.addresses[0]
    query = dns.message.make_query("nope.default.svc.cluster.local", "AAAA", id=77, want_dnssec=True, payload=1232)
    reply = await dns.asyncquery.tcp(query, host, port=port, timeout=2)
    [line] = lines(capsys)
    size, rsize = len(query.to_wire()), len(reply.to_wire())
    assert re.fullmatch(
        rf'\[INFO\] 127\.0\.0\.1:\d+ - 77 "AAAA IN nope\.default\.svc\.cluster\.local\. tcp {size} true 65535" '
        rf"NXDOMAIN qr,aa,rd {rsize} {DURATION}",
        line,
    ), line


async def test_classes_filter_as_corednss_log_class(serve, capsys):
    serving = await serve(log_queries=frozenset({"denial", "error"}))
    for name, qtype in [
        ("kubia.default.svc.cluster.local", "A"),  # success: not logged
        ("nope.default.svc.cluster.local", "A"),  # NXDOMAIN: denial
        ("kubia.default.svc.cluster.local", "TXT"),  # NODATA: denial
        ("example.com", "A"),  # outside the zones (REFUSED while forwarding is off): error
    ]:
        await udp_exchange(serving, dns.message.make_query(name, qtype))
    logged = lines(capsys)
    assert [line.split('"')[1].split()[:3] for line in logged] == [
        ["A", "IN", "nope.default.svc.cluster.local."],
        ["TXT", "IN", "kubia.default.svc.cluster.local."],
        ["A", "IN", "example.com."],
    ]
    assert logged[0].split('" ')[1].startswith("NXDOMAIN ")
    assert logged[1].split('" ')[1].startswith("NOERROR ")


async def test_off_prints_nothing_and_uses_the_plain_callback(serve, capsys):
    serving = await serve()
    await udp_exchange(serving, dns.message.make_query("kubia.default.svc.cluster.local", "A"))
    assert capsys.readouterr().out == ""
    listener = serving.dns_server.udp[0]
    assert type(listener.observe) is _Observer
    logging_on = await serve(log_queries=frozenset({"all"}))
    assert type(logging_on.dns_server.udp[0].observe) is _LoggingObserver


def test_fields_of_odd_queries():
    # IPv6 client in brackets, unknown type and class by number, an undecodable packet's fields "-"
    query = dns.message.make_query("x.example", 65280, rdclass=3, id=1)
    query.question[0].rdclass = 4000
    response = b"\x00\x01\x81\x05" + b"\x00" * 8
    line = format_line("udp", ("::1", 5353, 0, 0), query.to_wire(), response, 0.000066)
    assert line == '[INFO] [::1]:5353 - 1 "TYPE65280 CLASS4000 x.example. udp 27 false 512" REFUSED qr,rd 12 0.000066s'
    garbage = format_line("udp", ("127.0.0.1", 1), b"\x00\x02\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3f", response, 1.5)
    assert garbage == '[INFO] 127.0.0.1:1 - 2 "- - - udp 13 false 512" REFUSED qr,rd 12 1.5s'


@pytest.mark.parametrize(
    "seconds,text", [(0.000066, "0.000066s"), (6.6042e-05, "0.000066042s"), (0.0012345678912, "0.001234568s"), (2, "2s")]
)
def test_duration_like_go(seconds, text):
    assert _seconds(seconds) == text


def test_response_class():
    def reply(rcode: int, answer: str | None = None, soa: bool = False, qtype: str = "A") -> bytes:
        message = dns.message.make_response(dns.message.make_query("a.example", qtype))
        message.set_rcode(rcode)
        if answer:
            message.answer.append(dns.rrset.from_text("a.example.", 5, "IN", *answer.split(" ", 1)))
        if soa:
            message.authority.append(dns.rrset.from_text("example.", 5, "IN", "SOA", "ns. h. 1 2 3 4 5"))
        return message.to_wire()

    assert response_class(reply(0, "A 10.0.0.1")) == "success"
    assert response_class(reply(0, soa=True)) == "denial"  # NODATA
    assert response_class(reply(0, "CNAME b.example.")) == "denial"  # a CNAME alone: NODATA to CoreDNS
    assert response_class(reply(3, soa=True)) == "denial"
    assert response_class(reply(3)) == "error"  # NXDOMAIN without SOA is OtherError in CoreDNS
    assert response_class(reply(2)) == "error"
    assert response_class(reply(5)) == "error"
    assert response_class(reply(0)) == "success"  # an empty NOERROR (a hosts NODATA)


def test_cli_classes():
    parser = build_parser()

    def options(*argv: str):
        args = parser.parse_args(["serve", "--manifests", str(ZONES), "--no-forward", *argv])  # not this machine's resolv.conf
        return serve_options(args, settings_from(args), parser)

    assert options().log_queries is None
    assert options("--log-queries").log_queries == {"all"}
    assert options("--log-queries", "denial,error").log_queries == {"denial", "error"}
    assert parse_classes("success error") == {"success", "error"}
    with pytest.raises(SystemExit) as exc:
        options("--log-queries", "denials")
    assert exc.value.code == 2


async def test_a_forwarded_query_is_logged_when_its_answer_is_sent(serve, capsys):
    from clusterdns.forward import ForwardSettings
    from tests.upstreams import FakeUpstream

    with FakeUpstream() as upstream:
        forward = ForwardSettings(upstreams=((upstream.host, upstream.port),), loop_check=False, try_timeout=0.5,
                                  timeout=1.0)
        serving = await serve(forward=forward, log_queries=frozenset({"all"}))
        port, sent, received = await udp_exchange(serving, dns.message.make_query("example.com", "A", id=9))
    [line] = lines(capsys)
    assert re.fullmatch(
        rf'\[INFO\] 127\.0\.0\.1:{port} - 9 "A IN example\.com\. udp {len(sent)} false 512" '
        rf"NOERROR qr,aa,rd,ra {len(received)} {DURATION}",  # the upstream's flags (dnslib sets aa), with RA
        line,
    ), line
