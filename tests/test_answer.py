"""answer() and the records behind it, without sockets."""

import pytest
from dnslib import QTYPE, RCODE, DNSRecord, EDNS0

from clusterdns.answer import answer
from clusterdns.app import ClusterDNS
from clusterdns.events import Delete, Upsert
from clusterdns.objects import SERVICE
from clusterdns.settings import Settings

from .builders import endpoint_slice, namespace, pod, service


def make_dns(*objs, **settings):
    dns = ClusterDNS(Settings(**settings), implicit_namespaces=("default",))
    dns.sink([Upsert(o) for o in objs])
    return dns


def ask(dns, name, qtype="A", edns=None):
    q = DNSRecord.question(name, qtype)
    if edns is not None:
        q.add_ar(edns)
    return answer(dns.zone, q)[0]


def rdata(reply, section="rr"):
    return sorted(str(rr.rdata) for rr in getattr(reply, section))


HEADLESS = (
    service("hs", cluster_ip="None", ports=(("http", 80, None), ("", 9000, None))),
    endpoint_slice("hs-1", "hs", ["10.1.0.1", "10.1.0.2", "10.1.0.3"], ports=(("http", 8080), ("", 9000)), hostnames={"10.1.0.1": "web-0"}),
    endpoint_slice("hs-2", "hs", ["10.1.0.2", "10.1.0.4"], ready=False),
)


def test_clusterip_a_and_srv_with_glue():
    dns = make_dns(service("web", ports=(("http", 80, 8080), ("", 81, None))))
    assert rdata(ask(dns, "web.default.svc.cluster.local")) == ["10.96.0.100"]
    srv = ask(dns, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert rdata(srv) == ["0 100 80 web.default.svc.cluster.local."]
    assert rdata(srv, "ar") == ["10.96.0.100"]
    # the unnamed port has no _port._proto name, but the service name's SRV lists both ports
    assert rdata(ask(dns, "web.default.svc.cluster.local", "SRV")) == [
        "0 50 80 web.default.svc.cluster.local.",
        "0 50 81 web.default.svc.cluster.local.",
    ]


def test_headless_ready_endpoints_deduplicated_with_names_and_srv():
    dns = make_dns(*HEADLESS)
    assert rdata(ask(dns, "hs.default.svc.cluster.local")) == ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
    assert rdata(ask(dns, "web-0.hs.default.svc.cluster.local")) == ["10.1.0.1"]
    assert rdata(ask(dns, "10-1-0-3.hs.default.svc.cluster.local")) == ["10.1.0.3"]
    srv = ask(dns, "_http._tcp.hs.default.svc.cluster.local", "SRV")
    assert rdata(srv) == [
        "0 33 8080 10-1-0-2.hs.default.svc.cluster.local.",
        "0 33 8080 10-1-0-3.hs.default.svc.cluster.local.",
        "0 33 8080 web-0.hs.default.svc.cluster.local.",
    ]
    assert rdata(srv, "ar") == ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
    # a not-ready endpoint has no name
    assert ask(dns, "10-1-0-4.hs.default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_endpoint_pod_names_option():
    dns = make_dns(
        service("hs", cluster_ip="None"),
        pod("web-7", "10.1.0.7", labels={"a": "b"}),
        endpoint_slice("hs-1", "hs", ["10.1.0.7"]),
        endpoint_pod_names=True,
    )
    # no targetRef in this slice: falls back to the dashed IP
    assert rdata(ask(dns, "10-1-0-7.hs.default.svc.cluster.local")) == ["10.1.0.7"]


def test_headless_without_ready_endpoints_is_nxdomain_but_namespace_stays():
    dns = make_dns(service("hs", cluster_ip="None"), endpoint_slice("hs-1", "hs", ["10.1.0.1"], ready=False))
    reply = ask(dns, "hs.default.svc.cluster.local")
    assert reply.header.rcode == RCODE.NXDOMAIN and reply.auth[0].rtype == QTYPE.SOA
    assert ask(dns, "default.svc.cluster.local").header.rcode == RCODE.NOERROR


def test_ignore_empty_service():
    assert ask(make_dns(service("web")), "web.default.svc.cluster.local").header.rcode == RCODE.NOERROR
    dns = make_dns(service("web"), ignore_empty_service=True)
    assert ask(dns, "web.default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_external_name_cname_and_in_zone_chain():
    dns = make_dns(
        service("ext", cluster_ip=None, type="ExternalName", externalName="db.example.com"),
        service("alias", cluster_ip=None, type="ExternalName", externalName="web.default.svc.cluster.local"),
        service("web"),
    )
    reply = ask(dns, "ext.default.svc.cluster.local")
    assert [(QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr] == [("CNAME", "db.example.com.")]
    reply = ask(dns, "alias.default.svc.cluster.local")
    assert [(QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr] == [
        ("CNAME", "web.default.svc.cluster.local."),
        ("A", "10.96.0.100"),
    ]


def test_ptr_for_cluster_ips_and_every_ready_endpoint_as_coredns():
    dns = make_dns(service("web", clusterIPs=["10.96.0.100", "fd00::100"]), *HEADLESS)
    assert rdata(ask(dns, "100.0.96.10.in-addr.arpa", "PTR")) == ["web.default.svc.cluster.local."]
    assert rdata(ask(dns, "0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa", "PTR")) == ["web.default.svc.cluster.local."]
    assert rdata(ask(dns, "1.0.1.10.in-addr.arpa", "PTR")) == ["web-0.hs.default.svc.cluster.local."]
    # no hostname: named as its forward name is, the dashed IP
    assert rdata(ask(dns, "3.0.1.10.in-addr.arpa", "PTR")) == ["10-1-0-3.hs.default.svc.cluster.local."]
    assert ask(dns, "4.0.1.10.in-addr.arpa", "PTR").header.rcode == RCODE.NXDOMAIN  # not ready: no PTR


def test_ptr_hostnamed_only_is_the_spec_rule():
    dns = make_dns(*HEADLESS, ptr_hostnamed_only=True)
    assert rdata(ask(dns, "1.0.1.10.in-addr.arpa", "PTR")) == ["web-0.hs.default.svc.cluster.local."]
    assert ask(dns, "3.0.1.10.in-addr.arpa", "PTR").header.rcode == RCODE.NXDOMAIN


def test_ptr_of_an_endpoint_uses_the_pod_name_with_endpoint_pod_names():
    objs = (service("web"), endpoint_slice("web-1", "web", ["10.1.0.7"], pods={"10.1.0.7": "web-7f9c"}))
    assert rdata(ask(make_dns(*objs), "7.0.1.10.in-addr.arpa", "PTR")) == ["10-1-0-7.web.default.svc.cluster.local."]
    named = make_dns(*objs, endpoint_pod_names=True)
    assert rdata(ask(named, "7.0.1.10.in-addr.arpa", "PTR")) == ["web-7f9c.web.default.svc.cluster.local."]
    assert rdata(ask(named, "web-7f9c.web.default.svc.cluster.local")) == ["10.1.0.7"]


def test_an_address_behind_several_services_has_one_ptr_per_service():
    dns = make_dns(
        service("web"), service("api", cluster_ip="10.96.0.101"),
        endpoint_slice("web-1", "web", ["10.1.0.9"]), endpoint_slice("api-1", "api", ["10.1.0.9"]),
    )
    assert rdata(ask(dns, "9.0.1.10.in-addr.arpa", "PTR")) == [
        "10-1-0-9.api.default.svc.cluster.local.",
        "10-1-0-9.web.default.svc.cluster.local.",
    ]


def test_srv_weight_counts_records_before_repeats_merge_as_coredns():
    dual = make_dns(service("web", clusterIPs=["10.96.0.100", "fd00::100"]))
    # two cluster IPs give two SRV records that merge into one: weight 100/2
    assert rdata(ask(dual, "_http._tcp.web.default.svc.cluster.local", "SRV")) == ["0 50 80 web.default.svc.cluster.local."]
    multi = make_dns(service("web", clusterIPs=["10.96.0.100", "fd00::100"], ports=(("http", 80, None), ("dns", 53, None))))
    assert rdata(ask(multi, "web.default.svc.cluster.local", "SRV")) == [
        "0 25 53 web.default.svc.cluster.local.",
        "0 25 80 web.default.svc.cluster.local.",
    ]
    # a dual-stack headless endpoint: one record per address before the merge
    hs = make_dns(
        service("hs", cluster_ip="None", ipFamilies=["IPv4", "IPv6"]),
        endpoint_slice("hs-1", "hs", [["10.1.0.1", "fd00::1"]], hostnames={"10.1.0.1": "web-0"}),
    )
    assert rdata(ask(hs, "_http._tcp.hs.default.svc.cluster.local", "SRV")) == ["0 50 8080 web-0.hs.default.svc.cluster.local."]


def test_dns_version_txt_has_the_specs_ttl():
    reply = ask(make_dns(), "dns-version.cluster.local", "TXT")
    assert [(str(rr.rdata), rr.ttl) for rr in reply.rr] == [('"1.1.0"', 28800)]


def test_pods_verified_gives_a_terminating_pod_no_record():
    dns = make_dns(pod("live", "10.1.0.5"), pod("going", "10.1.0.6", terminating=True), pods="verified")
    assert rdata(ask(dns, "10-1-0-5.default.pod.cluster.local")) == ["10.1.0.5"]
    assert ask(dns, "10-1-0-6.default.pod.cluster.local").header.rcode == RCODE.NXDOMAIN
    insecure = make_dns(pod("going", "10.1.0.6", terminating=True))
    assert rdata(ask(insecure, "10-1-0-6.default.pod.cluster.local")) == ["10.1.0.6"]  # insecure asks no pod


def test_nodata_vs_nxdomain_and_empty_non_terminals():
    dns = make_dns(service("web"), namespace("shop"))
    cases = [
        ("web.default.svc.cluster.local", "AAAA", RCODE.NOERROR),
        ("_tcp.web.default.svc.cluster.local", "A", RCODE.NOERROR),
        ("svc.cluster.local", "A", RCODE.NOERROR),
        ("shop.svc.cluster.local", "A", RCODE.NOERROR),
        ("nosuchns.svc.cluster.local", "A", RCODE.NXDOMAIN),
        ("x.web.default.svc.cluster.local", "A", RCODE.NXDOMAIN),
        ("a.b.c.web.default.svc.cluster.local", "A", RCODE.NXDOMAIN),
        ("web.default.svc.cluster.local.default.svc.cluster.local", "A", RCODE.NXDOMAIN),
        ("web.default.svc.cluster.local", "TYPE65280", RCODE.NOERROR),
    ]
    for name, qtype, rcode in cases:
        q = DNSRecord.question(name, qtype) if not qtype.startswith("TYPE") else DNSRecord.question(name, "A")
        if qtype.startswith("TYPE"):
            q.q.qtype = int(qtype[4:])
        reply, _ = answer(dns.zone, q)
        assert (reply.header.rcode, len(reply.rr)) == (rcode, 0), (name, qtype)
        assert reply.header.aa == 1
        (soa,) = reply.auth
        assert soa.rtype == QTYPE.SOA and soa.ttl == 5 and str(soa.rname) == "cluster.local."


def test_apex_soa_ns_and_dns_version():
    dns = make_dns(service("kube-dns", ns="kube-system", cluster_ip="10.96.0.10"))
    soa = ask(dns, "cluster.local", "SOA").rr[0].rdata
    assert (str(soa.mname), str(soa.rname), soa.times[1:]) == ("ns.dns.cluster.local.", "hostmaster.cluster.local.", (7200, 1800, 86400, 5))
    ns = ask(dns, "cluster.local", "NS")
    assert rdata(ns) == ["ns.dns.cluster.local."] and rdata(ns, "ar") == ["10.96.0.10"]
    assert rdata(ask(dns, "dns-version.cluster.local", "TXT")) == ['"1.1.0"']


def test_serial_changes_only_on_dns_visible_change():
    dns = make_dns(service("web"))
    serial = dns.zone.serial
    dns.sink([Upsert(service("web"))])
    assert dns.zone.serial == serial
    dns.sink([Upsert(service("web", cluster_ip="10.96.0.200"))])
    assert dns.zone.serial > serial
    dns.sink([Delete((SERVICE, "default", "web"))])
    assert ask(dns, "web.default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN


@pytest.mark.parametrize("mode, name, expected", [
    ("insecure", "10-244-1-5.default.pod.cluster.local", RCODE.NOERROR),
    ("insecure", "not-an-ip.default.pod.cluster.local", RCODE.NXDOMAIN),
    ("verified", "10-244-1-5.default.pod.cluster.local", RCODE.NOERROR),
    ("verified", "10-244-1-6.default.pod.cluster.local", RCODE.NXDOMAIN),
    ("disabled", "10-244-1-5.default.pod.cluster.local", RCODE.NXDOMAIN),
])
def test_pod_records(mode, name, expected):
    dns = make_dns(pod("p", "10.244.1.5"), pods=mode)
    reply = ask(dns, name)
    assert reply.header.rcode == expected
    if expected == RCODE.NOERROR:
        assert rdata(reply) == ["10.244.1.5"]


def test_pod_aaaa_insecure():
    dns = make_dns()
    assert rdata(ask(dns, "fd00--5.default.pod.cluster.local", "AAAA")) == ["fd00::5"]


def test_out_of_zone_refused_and_edns_badvers():
    dns = make_dns()
    assert ask(dns, "example.com").header.rcode == RCODE.REFUSED
    reply = ask(dns, "cluster.local", "SOA", edns=EDNS0(version=1))
    opt = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT][0]
    assert (reply.header.rcode, opt.ttl >> 24) == (0, 1)  # BADVERS = 16: high bits in OPT


def test_misses_are_servfail_until_the_first_full_sync():
    from clusterdns.events import Synced

    dns = ClusterDNS(Settings(), required_kinds=("Service", "EndpointSlice"))
    dns.sink([Upsert(service("web")), Synced("Service")])
    assert rdata(ask(dns, "web.default.svc.cluster.local")) == ["10.96.0.100"]  # known names answer
    for name, qtype in (("nope.default.svc.cluster.local", "A"), ("web.default.svc.cluster.local", "AAAA")):
        reply = ask(dns, name, qtype)
        assert (reply.header.rcode, reply.auth) == (RCODE.SERVFAIL, [])
    dns.sink([Synced("EndpointSlice")])
    assert ask(dns, "nope.default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_zone_record_count_follows_updates():
    dns = make_dns(*HEADLESS)

    def counted():
        return sum(len(rds) for n in dns.zone.names() for rds in dns.zone.records(n).values())

    assert dns.zone.record_count == counted()
    dns.sink([Delete((SERVICE, "default", "hs"))])
    assert dns.zone.record_count == counted()


def test_pod_name_parents_exist_where_pod_names_do():
    dns = make_dns(namespace("shop"), pod("p", "10.244.1.5"))
    assert ask(dns, "pod.cluster.local").header.rcode == RCODE.NOERROR
    assert ask(dns, "shop.pod.cluster.local").header.rcode == RCODE.NOERROR
    assert ask(dns, "nosuchns.pod.cluster.local").header.rcode == RCODE.NXDOMAIN
    assert ask(dns, "10-0-0-1.nosuchns.pod.cluster.local").header.rcode == RCODE.NXDOMAIN
    assert ask(dns, "x.10-0-0-1.shop.pod.cluster.local").header.rcode == RCODE.NXDOMAIN
    disabled = make_dns(pods="disabled")
    assert ask(disabled, "pod.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_external_name_that_is_an_ip_is_nxdomain():
    dns = make_dns(service("ip", cluster_ip=None, type="ExternalName", externalName="192.0.2.1"))
    assert ask(dns, "ip.default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_ignore_empty_service_keeps_the_ptr():
    dns = make_dns(service("web"), ignore_empty_service=True)
    assert rdata(ask(dns, "100.0.96.10.in-addr.arpa", "PTR")) == ["web.default.svc.cluster.local."]


@pytest.mark.parametrize(
    "name, qtype",
    [
        ("web.default.svc.cluster.local", "A"),  # it has A and SRV: the addresses win
        ("hs.default.svc.cluster.local", "A"),
        ("_http._tcp.hs.default.svc.cluster.local", "SRV"),  # with the same glue as an SRV query
        ("ext.default.svc.cluster.local", "CNAME"),
        ("100.0.96.10.in-addr.arpa", "PTR"),
        ("cluster.local", "SOA"),  # the apex holds SOA and NS
    ],
)
def test_any_gets_the_one_rrset_a_query_of_one_type_would(name, qtype):
    """RFC 8482 4.1: ANY is answered with one RRset of those at the name, not all of them."""
    dns = make_dns(service("web"), service("ext", cluster_ip=None, type="ExternalName", externalName="example.com"),
                   *HEADLESS)
    reply, single = ask(dns, name, "ANY"), ask(dns, name, qtype)
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa
    assert {QTYPE[rr.rtype] for rr in reply.rr} == {qtype}
    assert [str(rr) for rr in reply.rr + reply.ar] == [str(rr) for rr in single.rr + single.ar]


def test_any_is_nodata_at_a_name_without_records():
    empty = ask(make_dns(*HEADLESS), "svc.cluster.local", "ANY")
    assert (empty.header.rcode, empty.rr, [QTYPE[rr.rtype] for rr in empty.auth]) == (RCODE.NOERROR, [], ["SOA"])


def test_noendpoints_keeps_cluster_ips_and_drops_endpoint_names():
    objs = (service("web", ports=(("http", 80, None),)), endpoint_slice("web-1", "web", ["10.1.0.7"]), *HEADLESS)
    dns = make_dns(*objs, noendpoints=True)
    assert rdata(ask(dns, "web.default.svc.cluster.local")) == ["10.96.0.100"]
    assert rdata(ask(dns, "web.default.svc.cluster.local", "SRV")) == ["0 100 80 web.default.svc.cluster.local."]
    for name in ("10-1-0-7.web.default.svc.cluster.local", "hs.default.svc.cluster.local", "web-0.hs.default.svc.cluster.local"):
        assert ask(dns, name).header.rcode == RCODE.NXDOMAIN, name
    assert ask(dns, "7.0.1.10.in-addr.arpa", "PTR").header.rcode == RCODE.NXDOMAIN
    assert rdata(ask(make_dns(*objs), "10-1-0-7.web.default.svc.cluster.local")) == ["10.1.0.7"]
