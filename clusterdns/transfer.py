"""Zone transfers (AXFR, RFC 5936) of the served zones, over TCP, to the clients ``--transfer-to`` allows.

The TCP listener hands a query here when :func:`is_transfer` says its type is
AXFR or IXFR (a few byte reads, on TCP only: the UDP hot path never sees
this module).  An IXFR is answered with the whole zone, in AXFR form, as RFC
1995 allows.  The transfer is the SOA, every stored record under the zone's
apex, and the SOA again, in messages of at most :data:`RECORDS_PER_MESSAGE`
records.  ``a-b-c-d.<ns>.pod`` names are not stored, so not transferred (as
CoreDNS): made up on the fly with ``--pods insecure``, looked up in the pod
index per query with ``--pods verified``.  Over UDP the answer path replies TC (AXFR) or the
current SOA alone (IXFR), both telling the client to come back over TCP.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from dnslib import EDNS0, QTYPE, RCODE, RR, DNSHeader, DNSRecord, EDNSOption

from . import reasons
from .acl import Network, allowed
from .answer import NOTAUTH, Reader, soa_record
from .settings import Settings
from .zone import Zone, to_rdata

RECORDS_PER_MESSAGE = 200  # well under 64 KiB with compression, and many messages for a big zone
DEFAULTS = Settings()  # the EDNS payload and explain setting of a refusal made without a zone

def is_transfer(data: bytes) -> bool:
    """Does this query ask for AXFR or IXFR?  (The type after an uncompressed QNAME.)"""
    offset = 12
    while offset < len(data):
        length = data[offset]
        if length == 0:
            qtype = data[offset + 1 : offset + 3]
            return qtype in (b"\x00\xfc", b"\x00\xfb")  # AXFR 252, IXFR 251
        if length > 63:
            return False
        offset += 1 + length
    return False


def transfer(zone: Zone | None, data: bytes, client: str, networks: Sequence[Network]) -> list[bytes] | None:
    """The messages that answer a transfer query from ``client`` (one error message when refused).

    None when the query is not a plain one-question query: the ordinary path answers it (FORMERR).
    ``zone`` None: a server that transfers nothing (``clusterdns dev`` answers several zones).
    """
    try:
        query = DNSRecord.parse(data)
    except Exception:  # dnslib raises several kinds for malformed input
        return None
    if query.header.qr or query.header.opcode != 0 or len(query.questions) != 1:
        return None
    question = query.questions[0]
    origin = str(question.qname).lower()
    edns = any(rr.rtype == QTYPE.OPT for rr in query.ar)
    if zone is None:
        return [_error(query, RCODE.REFUSED, edns, reasons.Reason(reasons.OTHER, "this server offers no zone transfers"), None)]
    if not allowed(client, networks):
        why = f"zone transfers are not allowed from {client} (see --transfer-to)"
        return [_error(query, RCODE.REFUSED, edns, reasons.Reason(reasons.OTHER, why), zone)]
    if origin not in zone.settings.zones:
        if zone.origin_for(origin) is None:
            reason = reasons.Reason(reasons.NOT_AUTHORITATIVE, "outside the cluster zones and forwarding is off")
            return [_error(query, RCODE.REFUSED, edns, reason, zone)]
        not_apex = reasons.explain(Reader(zone), origin, question.qtype, NOTAUTH)
        assert not_apex is not None  # NOTAUTH always has a reason: the name is no zone apex
        return [_error(query, NOTAUTH, edns, not_apex, zone)]
    records = [soa_record(zone, origin), *zone_records(zone, origin), soa_record(zone, origin)]
    messages = []
    for start in range(0, len(records), RECORDS_PER_MESSAGE):
        reply = _reply(query, edns, zone)
        reply.header.aa = 1
        for rr in records[start : start + RECORDS_PER_MESSAGE]:
            reply.add_answer(rr)
        messages.append(bytes(reply.pack()))
    return messages


def zone_records(zone: Zone, origin: str) -> Iterable[RR]:
    """Every stored record under ``origin`` (names in order; the apex's NS included, its SOA not)."""
    ttl = zone.settings.ttl
    for name in zone.names():
        if zone.origin_for(name) != origin:
            continue
        for qtype, rds in (zone.records(name) or {}).items():
            for rd in rds:
                yield RR(name, qtype, ttl=ttl, rdata=to_rdata(qtype, rd))


def _reply(query: DNSRecord, edns: bool, zone: Zone | None) -> DNSRecord:
    header = DNSHeader(id=query.header.id, qr=1, opcode=query.header.opcode, rd=query.header.rd)
    reply = DNSRecord(header, questions=list(query.questions))
    if edns:
        reply.add_ar(EDNS0(udp_len=(zone.settings if zone else DEFAULTS).max_udp_size))
    return reply


def _error(query: DNSRecord, rcode: int, edns: bool, reason: reasons.Reason, zone: Zone | None) -> bytes:
    reply = _reply(query, edns, zone)
    reply.header.rcode = rcode
    if edns and (zone.settings if zone else DEFAULTS).explain:
        reply.ar[0].rdata.append(EDNSOption(reasons.EDE_OPTION, reason.option()))
    return bytes(reply.pack())
