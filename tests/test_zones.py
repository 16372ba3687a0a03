"""The example cluster in zones/ answers exactly as zones/README.md says, over UDP and TCP.

The README's tables are the expected answers; this test reads them, so the
documentation and the server cannot drift apart.
"""

from collections import defaultdict

import dns.rcode
import dns.rdatatype
import pytest

from clusterdns.objects import SERVICE
from clusterdns.zone import to_rdata

from .conftest import ZONES


def readme_tables():
    expected, nodata, nxdomain = defaultdict(list), [], []
    section = ""
    for line in (ZONES / "README.md").read_text().splitlines():
        if line.startswith("#"):
            section = line
            continue
        if not section.startswith("###") or not line.startswith("| ") or line.startswith("| Name"):
            continue
        name, qtype, data = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if "NODATA" in section:
            nodata.append((name, qtype))
        elif "NXDOMAIN" in section:
            nxdomain.append((name, qtype))
        else:
            expected[(name, qtype)].append(data)
    return expected, nodata, nxdomain


EXPECTED, NODATA, NXDOMAIN = readme_tables()
TRANSPORTS = [pytest.param(False, id="udp"), pytest.param(True, id="tcp")]


def test_the_tables_cover_every_record_kind():
    kinds = {qtype for _, qtype in EXPECTED}
    assert {"A", "AAAA", "CNAME", "SRV", "PTR", "NS", "TXT"} <= kinds
    assert len(NODATA) >= 5 and len(NXDOMAIN) >= 10


@pytest.mark.parametrize("tcp", TRANSPORTS)
@pytest.mark.parametrize("name, qtype", sorted(EXPECTED))
def test_positive_answers(zones_server, name, qtype, tcp):
    reply = zones_server.query(name, qtype, tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    (rrset,) = reply.answer
    assert (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype)) == (name + ".", qtype)
    assert sorted(rd.to_text() for rd in rrset) == sorted(EXPECTED[(name, qtype)])
    assert rrset.ttl == (28800 if name.startswith("dns-version.") else 5)  # the spec's TTL for dns-version


@pytest.mark.parametrize("tcp", TRANSPORTS)
@pytest.mark.parametrize("name, qtype", NODATA)
def test_nodata(zones_server, name, qtype, tcp):
    reply = zones_server.query(name, qtype, tcp=tcp)
    assert (reply.rcode(), reply.answer) == (dns.rcode.NOERROR, [])
    assert [dns.rdatatype.to_text(r.rdtype) for r in reply.authority] == ["SOA"]


@pytest.mark.parametrize("tcp", TRANSPORTS)
@pytest.mark.parametrize("name, qtype", NXDOMAIN)
def test_nxdomain(zones_server, name, qtype, tcp):
    reply = zones_server.query(name, qtype, tcp=tcp)
    assert (reply.rcode(), reply.answer) == (dns.rcode.NXDOMAIN, [])
    (soa,) = reply.authority
    assert soa.ttl == 5 and dns.rdatatype.to_text(soa.rdtype) == "SOA"


def test_every_stored_record_is_documented(zones_server):
    documented = {(n, t, d) for (n, t), datas in EXPECTED.items() for d in datas}
    zone = zones_server.dns.zone

    def stored():
        return {
            (name.rstrip("."), dns.rdatatype.to_text(t), str(to_rdata(t, rd)))
            for name in zone.names()
            for t, rds in zone.records(name).items()
            for rd in rds
        }

    assert zones_server.call(stored) - documented == set()


def test_srv_answers_carry_target_addresses(zones_server):
    reply = zones_server.query("_server._tcp.zk-hs.default.svc.cluster.local", "SRV")
    glue = sorted((rrset.name.to_text(), rd.to_text()) for rrset in reply.additional for rd in rrset)
    assert glue == [
        ("zk-0.zk-hs.default.svc.cluster.local.", "10.244.1.40"),
        ("zk-1.zk-hs.default.svc.cluster.local.", "10.244.2.41"),
        ("zk-2.zk-hs.default.svc.cluster.local.", "10.244.1.42"),
    ]


def test_external_name_answers_cname_for_a_queries(zones_server):
    reply = zones_server.query("my-service.default.svc.cluster.local", "A")
    assert [(dns.rdatatype.to_text(r.rdtype), r[0].to_text()) for r in reply.answer] == [("CNAME", "my.database.example.com.")]


def test_soa_serial_moves_only_on_dns_visible_change(zones_server):
    def soa_serial():
        return zones_server.query("cluster.local", "SOA").answer[0][0].serial

    before = soa_serial()
    kubia = zones_server.call(zones_server.dns.cluster.get, SERVICE, "default", "kubia")
    from clusterdns.events import Upsert

    zones_server.call(zones_server.dns.sink, [Upsert(kubia)])
    assert soa_serial() == before
