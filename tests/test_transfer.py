"""Zone transfers over real TCP (dnspython's xfr client), and what UDP says instead."""

from __future__ import annotations

import socket
import struct

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from clusterdns.acl import parse_networks
from clusterdns.cli import build_parser, serve_options, settings_from
from tests.conftest import ZONES
from tests.dnsserver import RunningServer


def transfer_messages(server: RunningServer, zone: str, rdtype: str = "AXFR") -> list[dns.message.Message]:
    """Every message of one transfer, read off a raw TCP stream until the closing SOA."""
    query = dns.message.make_query(zone, rdtype, use_edns=0)
    if rdtype == "IXFR":  # an IXFR carries the client's SOA in the authority section
        query = dns.message.make_query(zone, "IXFR")
        query.authority.append(
            dns.rrset.from_text(zone, 0, "IN", "SOA", f"ns.{zone} h.{zone} 1 1 1 1 1")
        )
    wire = query.to_wire()
    messages: list[dns.message.Message] = []
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        stream = sock.makefile("rb")
        soas = 0
        while soas < 2:
            length = struct.unpack("!H", stream.read(2))[0]
            message = dns.message.from_wire(stream.read(length), one_rr_per_rrset=True)
            messages.append(message)
            if message.rcode() != dns.rcode.NOERROR:
                break
            soas += sum(1 for rrset in message.answer if rrset.rdtype == dns.rdatatype.SOA)
    return messages


def records(messages) -> list[tuple[str, str, str]]:
    return [(str(rrset.name), dns.rdatatype.to_text(rrset.rdtype), rd.to_text()) for m in messages for rrset in m.answer for rd in rrset]


def test_axfr_of_the_cluster_zone_has_every_stored_record_between_two_soas(zones_server):
    messages = transfer_messages(zones_server, "cluster.local.")
    got = records(messages)
    assert got[0][1] == "SOA" and got[-1][1] == "SOA" and got[0] == got[-1]
    assert ("kubia.default.svc.cluster.local.", "A", "10.96.100.10") in got
    assert ("_http._tcp.kubia.default.svc.cluster.local.", "SRV", "0 100 80 kubia.default.svc.cluster.local.") in got
    assert not any(name.endswith("in-addr.arpa.") for name, _, _ in got)
    assert all(m.flags & dns.flags.AA for m in messages)
    stored = zones_server.call(lambda: sum(
        len(rds) for n in zones_server.dns.zone.names() if n.endswith("cluster.local.")
        for rds in zones_server.dns.zone.records(n).values()
    ))
    assert len(got) == stored + 2


def test_dnspythons_xfr_client_reads_the_reverse_zone(zones_server):
    names = {str(rrset.name) for m in dns.query.xfr(zones_server.host, "in-addr.arpa.", port=zones_server.port, timeout=5, relativize=False)
             for rrset in m.answer}
    assert "10.100.96.10.in-addr.arpa." in names


def test_a_large_zone_comes_in_several_messages(tmp_path):
    docs = [
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: default}}\n"
        f"spec: {{clusterIP: 10.96.{i // 250}.{i % 250 + 1}, ports: [{{name: http, port: 80}}]}}\n"
        for i in range(300)
    ]
    (tmp_path / "many.yaml").write_text("---\n".join(docs))
    with RunningServer([tmp_path]) as server:
        messages = transfer_messages(server, "cluster.local.")
        got = records(messages)
        assert len(messages) > 2 and got[0][1] == got[-1][1] == "SOA"
        assert sum(1 for name, t, _ in got if t == "A" and name.startswith("s")) == 300
        ixfr = transfer_messages(server, "cluster.local.", "IXFR")  # answered in AXFR form
        assert records(ixfr) == got


def test_transfers_are_refused_to_clients_outside_transfer_to_and_for_non_apex_names(zones_server):
    assert transfer_messages(zones_server, "kubia.default.svc.cluster.local.")[0].rcode() == 9  # NOTAUTH
    outside = transfer_messages(zones_server, "example.com.")[0]
    assert outside.rcode() == dns.rcode.REFUSED
    with RunningServer([ZONES]) as server:
        server._server.transfer_to = parse_networks("127.0.0.2/32", "--transfer-to")
        refused = transfer_messages(server, "cluster.local.")
        assert len(refused) == 1 and refused[0].rcode() == dns.rcode.REFUSED and not refused[0].answer
        assert [o.text for o in refused[0].options if o.otype == dns.edns.EDE] == [
            "zone transfers are not allowed from 127.0.0.1 (see --transfer-to)"
        ]


def test_over_udp_axfr_gets_tc_and_ixfr_the_current_soa(zones_server):
    axfr = zones_server.query("cluster.local.", "AXFR")
    assert axfr.flags & dns.flags.TC and not axfr.answer and axfr.rcode() == dns.rcode.NOERROR
    ixfr = zones_server.query("cluster.local.", "IXFR")
    assert [rrset.rdtype for rrset in ixfr.answer] == [dns.rdatatype.SOA]


def test_transfer_to_option():
    parser = build_parser()
    args = parser.parse_args(["serve", "--transfer-to", "10.0.0.0/8, 192.0.2.1"])
    options = serve_options(args, settings_from(args), parser)
    assert [str(n) for n in options.transfer_to] == ["10.0.0.0/8", "192.0.2.1/32"]
    with pytest.raises(SystemExit):
        bad = parser.parse_args(["serve", "--transfer-to", "nope"])
        serve_options(bad, settings_from(bad), parser)
