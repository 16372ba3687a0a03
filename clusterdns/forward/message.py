"""Wire-format helpers for forwarded messages: done on bytes, so a cache hit is a few slices.

A forwarded answer is stored without its ID and OPT record, with the offsets of
its TTLs, so serving it again is: copy, count each TTL down, splice in the
client's ID and question (its letter case), and append our own OPT if the
client sent one.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from dnslib import QTYPE, DNSRecord, EDNS0

from ..wire import HEADER, parse_question, question_name

OPT = QTYPE.OPT
SOA = QTYPE.SOA
CLASS_IN = 1
QR, AA, TC, RD = 0x8000, 0x0400, 0x0200, 0x0100
RA, AD, CD = 0x0080, 0x0020, 0x0010


@dataclass(frozen=True, slots=True)
class ClientQuery:
    """What the forwarder needs from a client's query."""

    data: bytes  # the query (normalised if the fast parser could not read the original)
    qname_end: int
    qtype: int
    qclass: int
    name: str  # lower case, absolute
    edns: bool
    do: bool
    cd: bool
    udp_limit: int

    @property
    def question(self) -> bytes:
        """The question as asked upstream: QNAME in lower case, QTYPE, QCLASS."""
        return lower_question(self.data[12 : self.qname_end + 4])

    @property
    def key(self) -> bytes:
        """The cache key: the lower-cased question and the bits that change what an upstream answers."""
        return self.question + bytes((self.do, self.cd))


def lower_question(question: bytes) -> bytes:
    """A wire question with its name in lower case (the type and class bytes untouched)."""
    return question[:-4].lower() + question[-4:]


def client_query(data: bytes, max_udp: int) -> ClientQuery | None:
    """Parse a query the zone did not serve; None if it is not one ordinary question.

    ``max_udp`` caps the client's UDP limit (our advertised payload size, whatever the client asks)."""
    question = parse_question(data, max_udp)
    if question is None:
        normalised = _normalise(data)
        if normalised is None:
            return None
        data = normalised
        question = parse_question(data, max_udp)
        if question is None:
            return None
    end = question.qname_end
    flags = HEADER.unpack_from(data)[1]
    edns = question.key[-1:] != b"-"
    return ClientQuery(
        data=data,
        qname_end=end,
        qtype=question.qtype,
        qclass=int.from_bytes(data[end + 2 : end + 4], "big"),
        name=question_name(data, end),
        edns=edns,
        do=question.key[-1:] == b"D",
        cd=bool(flags & CD),
        udp_limit=question.udp_limit,
    )


def _normalise(data: bytes) -> bytes | None:
    """A query the fast parser declined (a compressed question, EDNS options it skips) rebuilt plainly."""
    try:
        query = DNSRecord.parse(data)
    except Exception:  # dnslib raises several kinds on bad input
        return None
    if len(query.questions) != 1 or query.header.qr:
        return None
    opts = [rr for rr in query.ar if rr.rtype == OPT]
    plain = DNSRecord(query.header, questions=query.questions)
    if opts:
        do = "do" if opts[0].ttl & 0x8000 else ""
        plain.add_ar(EDNS0(udp_len=max(512, opts[0].rclass), flags=do))
    return bytes(plain.pack())


def upstream_query(question: bytes, do: bool, cd: bool, payload: int) -> tuple[int, bytes]:
    """(ID, query) asking ``question`` (QNAME+QTYPE+QCLASS wire bytes) with RD, CD, DO and our payload."""
    qid = int.from_bytes(os.urandom(2), "big")
    flags = RD | (CD if cd else 0)
    header = HEADER.pack(qid, flags, 1, 0, 0, 1)
    opt = b"\x00\x00\x29" + payload.to_bytes(2, "big") + b"\x00\x00" + (b"\x80\x00" if do else b"\x00\x00") + b"\x00\x00"
    return qid, header + question + opt


def name_question(name: str, qtype: int, qclass: int = CLASS_IN) -> bytes:
    """The wire question for a text name."""
    out = bytearray()
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("latin-1")
            out += bytes((len(raw),)) + raw
    return bytes(out) + b"\x00" + struct.pack("!HH", qtype, qclass)


def matches(reply: bytes, qid: int, question: bytes) -> bool:
    """Is ``reply`` the response to our query ``qid`` for ``question`` (letter case aside)?"""
    if len(reply) < 12 + len(question):
        return False
    rid, flags, qdcount = struct.unpack_from("!HHH", reply)
    return (
        rid == qid
        and flags & QR
        and qdcount == 1
        and lower_question(reply[12 : 12 + len(question)]) == lower_question(question)
    )


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        if length & 0xC0:
            raise ValueError("bad label type")
        offset += 1 + length


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the records of a response are: enough to count TTLs down and find the negative TTL."""

    rcode: int
    answers: int  # ANCOUNT
    ttls: tuple[tuple[int, int], ...]  # (offset of the TTL field, TTL) of every record but OPT
    soa: tuple[int, int] | None  # (TTL, MINIMUM) of an SOA in the authority section
    without_opt: bytes  # the message with its OPT record removed (and ARCOUNT fixed)


def layout(data: bytes) -> Layout:
    """Walk a response's records; ValueError if it is malformed."""
    try:
        return _layout(data)
    except (IndexError, struct.error) as exc:
        raise ValueError(f"malformed response: {exc}") from None


def _layout(data: bytes) -> Layout:
    _, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    offset = 12
    for _ in range(qdcount):
        offset = _skip_name(data, offset) + 4
    ttls: list[tuple[int, int]] = []
    soa = None
    opt_span = None
    for index in range(ancount + nscount + arcount):
        start = offset
        offset = _skip_name(data, offset)
        rtype, _, ttl, rdlength = struct.unpack_from("!HHIH", data, offset)
        end = offset + 10 + rdlength
        if end > len(data):
            raise ValueError("record past the end of the message")
        if rtype == OPT:
            opt_span = (start, end)
        else:
            ttls.append((offset + 4, ttl))
            if rtype == SOA and ancount <= index < ancount + nscount:
                soa = (ttl, struct.unpack_from("!I", data, end - 4)[0])
        offset = end
    message = data
    if opt_span is not None:
        start, end = opt_span
        if end != len(data):
            raise ValueError("OPT is not the last record")  # never seen from real servers; not worth a repack
        message = data[:10] + struct.pack("!H", arcount - 1) + data[12:start]
    return Layout(flags & 0x000F, ancount, tuple(ttls), soa, bytes(message))


EDE_OPTION = 15  # RFC 8914 Extended DNS Error


def our_opt(do: bool, payload: int) -> bytes:
    return b"\x00\x00\x29" + payload.to_bytes(2, "big") + b"\x00\x00" + (b"\x80\x00" if do else b"\x00\x00") + b"\x00\x00"


def for_client(message: bytes, ttls, age: int | None, query: ClientQuery, udp: bool, payload: int) -> bytes:
    """A stored answer made the response to ``query``: TTLs counted down by ``age`` (None: stale, TTL 0)."""
    out = bytearray(message)
    for offset, ttl in ttls:
        struct.pack_into("!I", out, offset, 0 if age is None else max(0, ttl - age))
    return finish(out, query, udp, payload)


def finish(out: bytearray, query: ClientQuery, udp: bool, payload: int) -> bytes:
    """Client's ID, flags and question (letter case) on a response to its question; OPT; truncation."""
    data = query.data
    end = query.qname_end
    client_flags = HEADER.unpack_from(data)[1]
    flags = HEADER.unpack_from(out)[1]
    flags = (flags & ~(RD | CD | TC)) | QR | RA | (client_flags & (RD | CD))
    out[0:2] = data[0:2]
    struct.pack_into("!H", out, 2, flags)
    out[12:end] = data[12:end]  # same length: the upstream echoed our question
    opt = b""
    if query.edns:
        opt = our_opt(query.do, payload)
        struct.pack_into("!H", out, 10, HEADER.unpack_from(out)[5] + 1)
    if udp and len(out) + len(opt) > query.udp_limit:
        # Too big for the client over UDP: the question alone with TC, and it retries over TCP.
        short = bytearray(out[: end + 4])
        struct.pack_into("!HHHH", short, 4, 1, 0, 0, 1 if opt else 0)
        struct.pack_into("!H", short, 2, flags | TC)
        return bytes(short) + opt
    return bytes(out) + opt


def error_response(query: ClientQuery, rcode: int, payload: int, reason: tuple[int, str] | None = None) -> bytes:
    """An empty response with ``rcode`` (SERVFAIL, REFUSED) to ``query``.

    ``reason`` (an RFC 8914 code and text) goes into the OPT record as an
    Extended DNS Error when the client sent EDNS.
    """
    data = query.data
    out = bytearray(data[: query.qname_end + 4])
    struct.pack_into("!HHHH", out, 4, 1, 0, 0, 0)
    struct.pack_into("!H", out, 2, QR | rcode)
    response = finish(out, query, False, payload)
    if reason is None or not query.edns:
        return response
    code, text = reason
    option = struct.pack("!HHH", EDE_OPTION, 2 + len(text.encode()), code) + text.encode()
    # our OPT is the last 11 bytes, with RDLENGTH 0: give it the option
    return response[:-2] + struct.pack("!H", len(option)) + option
