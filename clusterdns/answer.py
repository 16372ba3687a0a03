"""From a parsed query and the zone to a response: a pure function, no sockets.

Negative answers are exact because most of a cluster's traffic is misses
(``ndots:5`` walks every search domain first): NXDOMAIN when the name does not
exist, NOERROR with no answers (NODATA) when it exists without the asked type,
and the zone's SOA in the authority section of both, whose TTL caches the miss.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from dnslib import EDNS0, OPCODE, EDNSOption, QTYPE, RCODE, RR, SOA, DNSHeader, DNSRecord

from . import reasons
from .names import dashed, namespace_name, pod_ip, pod_name, pod_parent
from .settings import DNS_VERSION_TTL
from .zone import Zone, to_rdata

if TYPE_CHECKING:
    from .hosts import Hosts

CLASS_IN = 1
CLASS_ANY = 255
BADVERS = 16
MAX_CNAME_CHAIN = 8
NOTAUTH = 9  # not authoritative for the zone asked to transfer
# ANY gets one RRset (RFC 8482 4.1): the addresses if there are any, else the first of these.
ANY_PREFERENCE = (QTYPE.A, QTYPE.AAAA, QTYPE.CNAME, QTYPE.SRV, QTYPE.PTR, QTYPE.SOA, QTYPE.NS)


class Reader:
    """The zone as one answer reads it: the same lookups, remembering every name and fact read.

    The answer cache keeps an answer with these names and drops it when the
    zone reports one of them changed.
    """

    __slots__ = ("zone", "settings", "catalog", "complete", "names")

    def __init__(self, zone: Zone):
        self.zone = zone
        self.settings = zone.settings
        self.catalog = zone.catalog
        self.complete = zone.complete
        self.names: set[str] = set()

    def records(self, name: str):
        self.names.add(name)
        return self.zone.records(name)

    def exists(self, name: str) -> bool:
        self.names.add(name)
        return self.zone.exists(name)

    def read(self, key: str) -> None:
        self.names.add(key)

    def has_pod(self, ip: str, namespace: str) -> bool:
        self.names.add(pod_name(dashed(ip), namespace, self.settings.zone))  # what Zone.move_pod reports
        return self.zone.pods.has(ip, namespace)

    def origin_for(self, name: str) -> str | None:
        return self.zone.origin_for(name)

    def __getattr__(self, attribute: str):
        # Everything else (serial, notes...) is read from the zone as it is: facts
        # that change with names the answer already read, or with every commit.
        return getattr(self.zone, attribute)


def answer(zone: Zone, query: DNSRecord, hosts: Hosts | None = None) -> tuple[DNSRecord, frozenset[str]]:
    """The response to ``query`` (already parsed; the header may ask for anything), and the names it read.

    ``hosts`` entries, when given, are consulted before the zone (CoreDNS's plugin order);
    the question's name then counts as read, since a hosts reload may change the answer.
    """
    reader = Reader(zone)
    reply = _answer(reader, query, hosts)
    if hosts is not None and query.questions:
        reader.names.add(str(query.questions[0].qname).lower())
    return reply, frozenset(reader.names)


def _answer(zone: Reader, query: DNSRecord, hosts: Hosts | None) -> DNSRecord:
    reply = DNSRecord(
        DNSHeader(
            id=query.header.id, qr=1, opcode=query.header.opcode, rd=query.header.rd, cd=query.header.cd,
            ra=zone.settings.recursion,
        ),
        questions=list(query.questions),
    )
    opts = [rr for rr in query.ar if rr.rtype == QTYPE.OPT]
    if opts:
        _add_opt(reply, opts[0], zone.settings.max_udp_size)
    if query.header.opcode != OPCODE.QUERY:
        reply.header.rcode = RCODE.NOTIMP
        return reply
    if len(query.questions) != 1 or len(opts) > 1:
        reply.header.rcode = RCODE.FORMERR
        return reply
    if opts and _edns_version(opts[0]) != 0:
        _set_rcode(reply, BADVERS)
        return reply

    question = query.questions[0]
    name = str(question.qname).lower()
    if hosts is not None and question.qclass in (CLASS_IN, CLASS_ANY):
        if hosts.answer(reply, name, question.qname, question.qtype):
            return reply
    final, types = _answer_question(zone, reply, question, name)
    if opts and zone.settings.explain and not reply.header.tc and (reply.header.rcode != RCODE.NOERROR or not reply.rr):
        # Why, in words (RFC 8914): computed once here, then cached with the encoded answer.
        reason = reasons.explain(zone, final, question.qtype, reply.header.rcode, types)
        if reason is not None:
            add_ede(reply, reason)
    return reply


def _answer_question(zone: Reader, reply: DNSRecord, question, name: str) -> tuple[str, tuple[int, ...]]:
    """Fill ``reply``; the last name looked up (a CNAME chain's end) and the types it has."""
    origin = zone.origin_for(name)
    if origin is None or question.qclass not in (CLASS_IN, CLASS_ANY):
        reply.header.rcode = RCODE.REFUSED
        return name, ()
    if question.qtype in (QTYPE.AXFR, QTYPE.IXFR):
        # Transfers run over TCP (transfer.py, in the TCP listener); over UDP, say "use TCP":
        # TC for AXFR (RFC 5936 4.2), the current SOA alone for IXFR (RFC 1995 2).
        if name not in zone.settings.zones:
            reply.header.rcode = NOTAUTH
        elif question.qtype == QTYPE.AXFR:
            reply.header.tc = 1
        else:
            reply.header.aa = 1
            reply.add_answer(soa_record(zone, origin))
        return name, ()

    reply.header.aa = 1
    final, types = _resolve(zone, reply, question.qname, name, question.qtype)
    if not zone.complete and (reply.header.rcode == RCODE.NXDOMAIN or not reply.rr):
        # Before the first full sync a miss is not known to be one; SERVFAIL,
        # unlike NXDOMAIN, is not kept by the caches downstream.
        reply.header.rcode = RCODE.SERVFAIL
        reply.header.aa = 0
        reply.auth = []
    return final, types


def _resolve(zone: Reader, reply: DNSRecord, qname, name: str, qtype: int) -> tuple[str, tuple[int, ...]]:
    ttl = zone.settings.ttl
    owner = qname  # the first owner keeps the question's letter case
    sets = None
    for _ in range(MAX_CNAME_CHAIN):
        origin = zone.origin_for(name)
        if origin is None:
            return name, ()  # the chain leaves our zones: the client's resolver follows it
        sets = lookup(zone, name)
        if name == origin:  # the apex owns the SOA, built from the current serial
            sets = {**(sets or {}), QTYPE.SOA: (soa_record(zone, origin).rdata,)}
        if sets is None:
            if not zone.exists(name):
                reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(soa_record(zone, origin))
            return name, ()
        cname = sets.get(QTYPE.CNAME)
        if cname and qtype not in (QTYPE.CNAME, QTYPE.ANY):
            reply.add_answer(RR(owner, QTYPE.CNAME, ttl=ttl, rdata=to_rdata(QTYPE.CNAME, cname[0])))
            name = cname[0].lower()
            owner = name
            continue
        wanted = _any_choice(sets) if qtype == QTYPE.ANY else [qtype]
        found = False
        # dns-version carries the spec's TTL; every other name the zone's.
        name_ttl = DNS_VERSION_TTL if name == "dns-version." + zone.settings.zone else ttl
        for t in wanted:
            for value in sets.get(t, ()):
                reply.add_answer(RR(owner, t, ttl=name_ttl, rdata=to_rdata(t, value)))
                found = True
        if not found:
            reply.add_auth(soa_record(zone, origin))  # NODATA
            return name, tuple(t for t, rds in sets.items() if rds)
        _add_glue(zone, reply, sets, wanted)
        return name, ()
    return name, ()


def _any_choice(sets) -> list[int]:
    """The one RRset an ANY query gets (none at a name without records: NODATA)."""
    for t in ANY_PREFERENCE:
        if sets.get(t):
            return [t]
    return [t for t in sets if sets[t]][:1]


def _add_glue(zone: Reader, reply: DNSRecord, sets, types: list[int]) -> None:
    """Addresses of SRV targets and name servers, so clients need no second query."""
    targets: list[str] = []
    if QTYPE.SRV in types:
        targets += [srv[3].lower() for srv in sets.get(QTYPE.SRV, ())]
    if QTYPE.NS in types:
        targets += [ns.lower() for ns in sets.get(QTYPE.NS, ())]
    ttl = zone.settings.ttl
    answered = {(str(rr.rname).lower(), rr.rtype) for rr in reply.rr}
    for target in dict.fromkeys(targets):
        found = lookup(zone, target) or {}
        for t in (QTYPE.A, QTYPE.AAAA):
            if (target, t) in answered:
                continue  # already in the answer section (an ANY query)
            for value in found.get(t, ()):
                reply.add_ar(RR(target, t, ttl=ttl, rdata=to_rdata(t, value)))


def lookup(zone: Reader | Zone, name: str):
    """Record sets at ``name``, including pod names made up on the fly (``--pods insecure``)."""
    settings = zone.settings
    pod_suffix = pod_parent(settings.zone)
    if settings.pods != "disabled":
        if name == pod_suffix:
            return {}  # pod.<zone>: the parent of every pod name
        if name.endswith("." + pod_suffix):
            return _pod_lookup(zone, name[: -len(pod_suffix) - 1])
    return zone.records(name)


def _pod_lookup(zone: Reader | Zone, prefix: str):
    labels = prefix.split(".")
    settings = zone.settings
    # As CoreDNS: pod names exist only in namespaces that exist (<ns>.svc.<zone> does),
    # and <ns>.pod.<zone> is their parent, so it exists too (NODATA).
    if len(labels) > 2 or not zone.exists(namespace_name(labels[-1], settings.zone)):
        return None
    if len(labels) == 1:
        return {}
    ip = pod_ip(labels[0])
    if ip is None:
        # --pod-names: <pod-name>.<ns>.pod.<zone>, held in the zone
        return zone.records(pod_name(labels[0], labels[1], settings.zone)) if settings.pod_names else None
    if settings.pods == "verified" and not zone.has_pod(ip, labels[1]):
        return None  # as CoreDNS: only an address a pod in that namespace has
    return {QTYPE.AAAA if ":" in ip else QTYPE.A: (ip,)}


def soa_record(zone: Reader | Zone, origin: str) -> RR:
    return _soa(origin, zone.serial, zone.settings.ttl)


@lru_cache(maxsize=16)
def _soa(origin: str, serial: int, ttl: int) -> RR:
    """Built once per serial: every miss carries one, and RRs are never changed after building."""
    # CoreDNS's SOA: refresh 7200, retry 1800, expire 86400, minimum = TTL.
    rdata = SOA(f"ns.dns.{origin}", f"hostmaster.{origin}", (serial, 7200, 1800, 86400, ttl))
    return RR(origin, QTYPE.SOA, ttl=ttl, rdata=rdata)


def _edns_version(opt: RR) -> int:
    return (opt.ttl >> 16) & 0xFF


def add_ede(reply: DNSRecord, reason: reasons.Reason) -> None:
    """Put ``reason`` in the reply's OPT record as an Extended DNS Error option."""
    for rr in reply.ar:
        if rr.rtype == QTYPE.OPT:
            rr.rdata.append(EDNSOption(reasons.EDE_OPTION, reason.option()))


def _add_opt(reply: DNSRecord, opt: RR, payload: int) -> None:
    do = bool(opt.ttl & 0x8000)
    reply.add_ar(EDNS0(udp_len=payload, flags="do" if do else ""))


def _set_rcode(reply: DNSRecord, rcode: int) -> None:
    """Set a possibly extended rcode: the high bits live in the OPT record."""
    reply.header.rcode = rcode & 0xF
    for rr in reply.ar:
        if rr.rtype == QTYPE.OPT:
            rr.ttl = (rr.ttl & 0x00FFFFFF) | ((rcode >> 4) << 24)
