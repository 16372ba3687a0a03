"""Bytes in, bytes out: the query hot path.

Most queries are repeats (every pod asks the same few names, and the same
search-path misses), so responses are kept pre-encoded at two levels:

1. by the exact query bytes after the ID (and the transport): a repeat of a
   query is answered by replaying the bytes sent last time with the new ID;
2. by the normalised question (lower-cased name, type, class) and the few
   header/EDNS bits that change the answer: a hit splices the new query's ID
   and question (which carries the client's letter case, echoed back) into
   the stored bytes.

Everything else goes through dnslib and :func:`~clusterdns.answer.answer`,
with the zone recording which names the answer read.  When the zone commits a
change it names what changed, and only the answers that read those names are
dropped: in a busy cluster most cached answers outlive most updates.  (The
SOA in a cached negative answer may carry an older serial; resolvers use only
its TTL.)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Iterable

from cachetools import LRUCache
from dnslib import QTYPE, RCODE, RR, DNSError, DNSHeader, DNSQuestion, DNSRecord
from dnslib.bimap import BimapError
from dnslib.buffer import BufferError
from dnslib.label import DNSBuffer

from .answer import answer
from .loadbalance import Plan, rotate, rotation_plan
from .routing import goes_upstream
from .packet import PacketError, question_end
from .zone import Zone

HEADER = struct.Struct("!HHHHHH")
MIN_UDP_PAYLOAD = 512
MAX_MESSAGE = 65535
MAX_NAME = 255  # bytes of a name on the wire (RFC 1035 2.3.4)
MAX_LABEL = 63
# Answers that depend only on the zone (SERVFAIL, say, is transient: never kept).
CACHED_RCODES = (RCODE.NOERROR, RCODE.NXDOMAIN, RCODE.REFUSED)
# What respond() returns instead of an rcode when the forwarder must finish the job (server.py):
FORWARD = -1  # the name is not served here: the "response" is the query, to be forwarded
CHASE = -2  # a cluster answer ending in a CNAME to an outside name, whose records come from upstream
CLASS_IN = 1


@dataclass(frozen=True, slots=True)
class Question:
    """What the fast parser learns from a query without building objects."""

    key: bytes  # cache key: lower-cased question + answer-relevant bits
    qname_end: int  # offset just past QNAME in the query (question ends 4 later)
    udp_limit: int  # largest UDP response the client accepts
    qtype: int


def parse_question(data: bytes, max_udp: int = MAX_MESSAGE) -> Question | None:
    """Fast path parse of an ordinary query; None means "take the slow path".

    ``max_udp`` is our own advertised payload size: a client asking for more
    gets no more (anti-amplification, as CoreDNS's ``bufsize``).
    """
    if len(data) < 17:
        return None
    _, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if flags & 0xF800 or qdcount != 1 or ancount or nscount or arcount > 1:
        return None  # a response, an opcode other than QUERY, or something unusual
    offset = 12
    while True:
        if offset >= len(data):
            return None
        length = data[offset]
        if length == 0:
            break
        if length > 63:
            return None  # compression pointer in a question: leave it to the full parser
        offset += 1 + length
    qname_end = offset + 1
    if qname_end + 4 > len(data):
        return None
    qtype = (data[qname_end] << 8) | data[qname_end + 1]
    udp_limit = MIN_UDP_PAYLOAD
    edns = b"-"
    rest = qname_end + 4
    if arcount:
        # Only a bare OPT record (root owner, type 41) is understood here.
        if rest + 11 > len(data) or data[rest] != 0 or data[rest + 1 : rest + 3] != b"\x00\x29":
            return None
        payload = (data[rest + 3] << 8) | data[rest + 4]
        version = data[rest + 6]
        do_bit = data[rest + 7] & 0x80
        rdlen = (data[rest + 9] << 8) | data[rest + 10]
        if version != 0 or rest + 11 + rdlen != len(data):
            return None
        udp_limit = min(max(MIN_UDP_PAYLOAD, payload), max_udp)
        edns = b"D" if do_bit else b"E"
    elif rest != len(data):
        return None
    # RD and CD are echoed, so they are part of the key; so is EDNS presence/DO.
    bits = bytes((flags >> 8 & 0x01, flags & 0x10)) + edns
    return Question(data[12:qname_end].lower() + data[qname_end : qname_end + 4] + bits, qname_end, udp_limit, qtype)


class Responder:
    """Answers wire-format queries from the zone, through the pre-encoded caches."""

    def __init__(self, zone: Zone, cache_size: int = 100_000):
        self.zone = zone
        self.hosts = None  # hosts entries answered before the zone (see use_hosts)
        self.cache_size = cache_size
        self.max_udp = zone.settings.max_udp_size
        # exact repeats: (response, qtype, where its address records may be rotated)
        self.replies: dict[tuple[bool, bytes], tuple[bytes, int, Plan | None]] = {}
        # by question: (response, names it read, rotation plan)
        self.cache: LRUCache[bytes, tuple[bytes, frozenset[str], Plan | None]] = LRUCache(maxsize=cache_size)
        # name → the cache keys whose answers read it, to drop them when it changes
        self._readers: dict[str, set[tuple[bool, bytes] | bytes]] = {}
        self._reader_count = 0
        self.hits = 0
        self.misses = 0
        # Rotate A/AAAA records between cache hits (--loadbalance); off, the plans are None.
        self.loadbalance = False
        self._turn = 0
        self.autopath = None  # an autopath.Autopath with --autopath: the server then passes client addresses
        # When the server forwards, names it does not serve go upstream; otherwise they are REFUSED.
        self.forwarding = False
        zone.listeners.append(self.forget)

    def use_hosts(self, hosts) -> None:
        """Answer ``hosts`` (a :class:`~clusterdns.hosts.Hosts`) entries before the zone's names."""
        self.hosts = hosts
        hosts.listeners.append(self.forget)
        self.clear()

    def serves(self, name: str) -> bool:
        """Is ``name`` (lower case, absolute) answered here, by the hosts entries or the zone?  Never forward those.

        Reverse names the cluster does not own are not served (see routing.py)."""
        return (self.hosts is not None and self.hosts.serves(name)) or not goes_upstream(self.zone, name)

    def clear(self) -> None:
        self.replies.clear()
        self.cache.clear()
        self._readers.clear()
        self._reader_count = 0

    def forget(self, names: Iterable[str] | None) -> None:
        """Drop the answers that read any of ``names`` (None: all of them)."""
        if names is None:
            self.clear()
            return
        for name in names:
            for key in self._readers.pop(name, ()):
                if isinstance(key, tuple):
                    self.replies.pop(key, None)
                else:
                    self.cache.pop(key, None)

    def _remember(self, key: tuple[bool, bytes] | bytes, names: frozenset[str]) -> None:
        self._reader_count += len(names)
        if self._reader_count > 8 * self.cache_size:
            self.clear()  # the index outgrew the caches (evicted keys linger in it): start afresh
        for name in names:
            self._readers.setdefault(name, set()).add(key)

    def respond(self, data: bytes, udp: bool, client: str | None = None) -> tuple[bytes | None, int, int]:
        """(response or None to drop, qtype, rcode) for one query (``client``: its address, with autopath)."""
        data = bytes(data)
        if client is not None:
            namespace = self.autopath.namespace_of(client)
            if namespace is not None:
                searched = self._respond_searched(data, udp, namespace)
                if searched is not None:
                    return searched
        key = (udp, data[2:])
        replay = self.replies.get(key)
        if replay is not None:
            self.hits += 1
            response, qtype, plan = replay
            response = data[:2] + response[2:]
            if plan is not None:
                self._turn += 1
                response = rotate(response, plan, self._turn)
            return response, qtype, response[3] & 0x0F
        question = parse_question(data, self.max_udp)
        result = names = plan = None
        if question is not None:
            cached = self.cache.get(question.key)
            if cached is not None:
                stored, names, plan = cached
                # ID from the query, question (with its letter case) from the query.
                response = data[:2] + stored[2:12] + data[12 : question.qname_end] + stored[question.qname_end :]
                if not udp or len(response) <= question.udp_limit:
                    self.hits += 1
                    result = response, question.qtype, stored[3] & 0x0F
        hit = result is not None
        if not hit:
            if self.forwarding and question is not None and self._goes_upstream(data, question):
                return data, question.qtype, FORWARD
            self.misses += 1
            result, names = self._respond_slowly(data, question, udp)
            # (computed on the bytes sent: glue may have been dropped to fit)
            plan = rotation_plan(result[0]) if self.loadbalance and names is not None else None
        if names is not None and result[0] is not None and result[0][3] & 0x0F in CACHED_RCODES:
            if len(self.replies) >= self.cache_size:
                self.replies.clear()  # cheap bound; the normalised cache refills it quickly
            self.replies[key] = (result[0], result[1], plan)
            self._remember(key, names)
        if hit and plan is not None:
            self._turn += 1
            result = rotate(result[0], plan, self._turn), result[1], result[2]
        return result

    def _respond_searched(self, data: bytes, udp: bool, namespace: str) -> tuple[bytes | None, int, int] | None:
        """The autopath answer for a pod in ``namespace``; None: answer it ordinarily.

        Kept in the question cache under the namespace too (b"\xff" cannot start a
        normal key): b"" stored means "ordinary", so a repeat costs one lookup.
        """
        question = parse_question(data, self.max_udp)
        if question is None or not question.key[: question.qname_end - 12].endswith(self.autopath.suffix(namespace)):
            return None
        key = b"\xff" + namespace.encode() + b"\0" + question.key
        cached = self.cache.get(key)
        if cached is None:
            self.zone.reads = reads = set()
            try:
                reply = self.autopath.resolve(parse_query(data), namespace)
            except (DNSError, ValueError, IndexError, struct.error, UnicodeDecodeError):
                reply = None
            finally:
                self.zone.reads = None
            cached = (bytes(reply.pack()) if reply is not None else b"", frozenset(reads), None)
            self.cache[key] = cached
            self._remember(key, cached[1])
            self.misses += reply is not None
        elif cached[0]:
            self.hits += 1
        stored = cached[0]
        if not stored:
            return None
        response = data[:2] + stored[2:12] + data[12 : question.qname_end] + stored[question.qname_end :]
        if udp and len(response) > question.udp_limit:
            response = fit(DNSRecord.parse(response), question.udp_limit)
        return response, question.qtype, response[3] & 0x0F
    def _goes_upstream(self, data: bytes, question: Question) -> bool:
        end = question.qname_end
        qclass = (data[end + 2] << 8) | data[end + 3]
        if qclass != CLASS_IN or question.qtype in (QTYPE.AXFR, QTYPE.IXFR):
            return False  # answered here (REFUSED), as without forwarding
        return not self.serves(question_name(data, end))

    def _respond_slowly(
        self, data: bytes, question: Question | None, udp: bool
    ) -> tuple[tuple[bytes | None, int, int], frozenset[str] | None]:
        """The answer through dnslib, and the names it read (None: not to be cached)."""
        try:
            query = parse_query(data)
        except (DNSError, ValueError, IndexError, struct.error, UnicodeDecodeError):
            return (formerr(data), 0, RCODE.FORMERR), None
        if query.header.qr:
            return (None, 0, 0), None  # never answer a response (reflection loops)
        qtype = query.questions[0].qtype if query.questions else 0
        if self.forwarding and question is None and _forwardable(query, self.serves):
            return (data, qtype, FORWARD), None
        self.zone.reads = reads = set()
        if self.hosts is not None and query.questions:
            reads.add(str(query.questions[0].qname).lower())  # a hosts reload may change this answer
        try:
            reply = answer(self.zone, query, self.hosts)
        finally:
            names, self.zone.reads = frozenset(reads), None
        full = bytes(reply.pack())
        if self.forwarding and _leaves_zone(reply, qtype, self.serves):
            return (full, qtype, CHASE), None
        cacheable = question is not None and reply.header.rcode in CACHED_RCODES
        if cacheable:
            self.cache[question.key] = (full, names, rotation_plan(full) if self.loadbalance else None)
            self._remember(question.key, names)
        limit = question.udp_limit if question is not None else udp_limit(query, self.max_udp)
        if udp and len(full) > limit or len(full) > MAX_MESSAGE:
            full = fit(reply, limit if udp else MAX_MESSAGE)
        return (full, qtype, reply.header.rcode), names if cacheable else None


def question_name(data: bytes, qname_end: int) -> str:
    """The uncompressed QNAME at offset 12 as lower-case text with the final dot."""
    labels, offset = [], 12
    while offset < qname_end - 1:
        length = data[offset]
        labels.append(data[offset + 1 : offset + 1 + length].decode("latin-1").lower())
        offset += 1 + length
    return ".".join(labels) + "."


def _forwardable(query: DNSRecord, serves: Callable[[str], bool]) -> bool:
    """A query the fast parser declined, for a name that goes upstream."""
    if query.header.opcode != 0 or len(query.questions) != 1:
        return False
    q = query.questions[0]
    if q.qclass != CLASS_IN or q.qtype in (QTYPE.AXFR, QTYPE.IXFR):
        return False
    return not serves(str(q.qname).lower())


def _leaves_zone(reply: DNSRecord, qtype: int, serves: Callable[[str], bool]) -> bool:
    """An answer ending in a CNAME (an ExternalName) to a name whose records are upstream."""
    if reply.header.rcode != RCODE.NOERROR or not reply.rr or qtype in (QTYPE.CNAME, QTYPE.ANY):
        return False
    last = reply.rr[-1]
    return last.rtype == QTYPE.CNAME and not serves(str(last.rdata.label).lower())


def parse_query(data: bytes) -> DNSRecord:
    """A query parsed whole and strictly; DNSError when it is malformed.

    Stricter than ``DNSRecord.parse``: bytes left after the last record, a
    name that could not be packed again (a label over 63 bytes, a name over
    255), and an OPT record outside the additional section (RFC 6891 6.1.1)
    are all errors, answered FORMERR rather than failing later in ``pack()``.
    """
    buffer = DNSBuffer(data)
    try:
        header = DNSHeader.parse(buffer)
        questions = [DNSQuestion.parse(buffer) for _ in range(header.q)]
        sections = [[RR.parse(buffer) for _ in range(count)] for count in (header.a, header.auth, header.ar)]
    except (BufferError, BimapError) as exc:
        raise DNSError(f"malformed message at offset {buffer.offset}: {exc}") from None
    if buffer.remaining():
        raise DNSError(f"{buffer.remaining()} bytes after the last record")
    for question in questions:
        labels = question.qname.label
        if any(len(label) > MAX_LABEL for label in labels) or sum(len(label) + 1 for label in labels) + 1 > MAX_NAME:
            raise DNSError("a name over 255 bytes or a label over 63")
    answers, authority, additional = sections
    if any(rr.rtype == QTYPE.OPT for rr in answers + authority):
        raise DNSError("OPT record outside the additional section")
    return DNSRecord(header, questions, answers, auth=authority, ar=additional)


def udp_limit(query: DNSRecord, max_udp: int = MAX_MESSAGE) -> int:
    """The largest UDP response for ``query``: its EDNS payload size (at least 512), at most ours."""
    for rr in query.ar:
        if rr.rtype == QTYPE.OPT:
            return min(max(MIN_UDP_PAYLOAD, rr.rclass), max_udp)
    return MIN_UDP_PAYLOAD


def fit(reply: DNSRecord, limit: int) -> bytes:
    """A response within ``limit`` bytes.

    Glue in the additional section is optional (RFC 2181 9): drop it first, and
    set no TC if the rest fits.  Otherwise TC=1 with the question and OPT only,
    and the client retries over TCP.
    """
    opt = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    without_glue = DNSRecord(reply.header, questions=reply.questions, rr=reply.rr, auth=reply.auth, ar=opt)
    packed = bytes(without_glue.pack())
    if len(packed) <= limit:
        return packed
    short = DNSRecord(reply.header, questions=reply.questions, ar=opt)
    short.header.tc = 1
    return bytes(short.pack())


def formerr(data: bytes) -> bytes | None:
    """FORMERR echoing the ID and opcode when a header can be read; None (drop) otherwise."""
    if len(data) < 12:
        return None
    msg_id, flags = struct.unpack_from("!HH", data)
    if flags & 0x8000:
        return None  # a malformed *response*: drop it, never answer one
    header = DNSHeader(id=msg_id, qr=1, opcode=(flags >> 11) & 0xF, rd=(flags >> 8) & 1, rcode=RCODE.FORMERR)
    return bytes(DNSRecord(header).pack())


def servfail(data: bytes) -> bytes | None:
    """SERVFAIL for a query we failed to answer (an internal error), echoing ID, flags and question.

    The question is copied when it can be found, since stub resolvers discard a
    response whose question does not match theirs.  None (drop) for a response
    or a packet without a header.
    """
    if len(data) < 12 or data[2] & 0x80:
        return None
    try:
        end = question_end(data) if int.from_bytes(data[4:6], "big") == 1 else 12
    except PacketError:
        end = 12
    flags = (0x8000 | (data[2] & 0x79) << 8 | (data[3] & 0x10) | RCODE.SERVFAIL).to_bytes(2, "big")  # QR, opcode, RD, CD
    return data[:2] + flags + (b"\x00\x01" if end > 12 else b"\x00\x00") + b"\x00" * 6 + data[12:end]
