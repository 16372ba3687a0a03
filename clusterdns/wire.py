"""Bytes in, bytes out: the query hot path.

Most queries are repeats (every pod asks the same few names, and the same
search-path misses), so responses are kept pre-encoded in
:class:`~clusterdns.answer_cache.AnswerCache`: by the exact query bytes, and
by the normalised question (whose hit splices in the query's ID and letter
case).  A miss whose name the zone says, with a lookup, does not exist or
lacks the type is encoded straight from the query's bytes
(:mod:`~clusterdns.negative`): unique names, a random-subdomain flood among
them, never touch dnslib.  Everything else goes through dnslib and
:func:`~clusterdns.answer.answer`, which returns the names it read.

When the zone commits a change it names what changed, and only the answers
that read those names are dropped: in a busy cluster most cached answers
outlive most updates.  (The SOA in a cached negative answer may carry an older
serial; resolvers use only its TTL.)
"""

from __future__ import annotations

import re
import struct
from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple

from dnslib import QTYPE, RCODE, RR, DNSError, DNSHeader, DNSQuestion, DNSRecord
from dnslib.bimap import BimapError
from dnslib.buffer import BufferError
from dnslib.label import DNSBuffer

from . import reasons
from .answer import Reader, answer
from .answer_cache import AnswerCache, Names
from .loadbalance import rotate, rotation_plan
from .negative import NOERROR, NXDOMAIN, ede_option, encode_negative, soa_tail
from .routing import goes_upstream
from .packet import PacketError, question_end
from .zone import Zone

if TYPE_CHECKING:
    from .autopath import Autopath

HEADER = struct.Struct("!HHHHHH")
MIN_UDP_PAYLOAD = 512
MAX_MESSAGE = 65535
MAX_NAME = 255  # bytes of a name on the wire (RFC 1035 2.3.4)
MAX_LABEL = 63
CLASS_IN = 1
_CNAME = QTYPE.CNAME
_NOT_PLAIN_TYPES = frozenset((QTYPE.ANY, QTYPE.AXFR, QTYPE.IXFR))  # never a plain negative
FORWARD = -1  # the name is not served here: the "response" is the query, to be forwarded
CHASE = -2  # a cluster answer ending in a CNAME to an outside name, whose records come from upstream
# Answers that depend only on the zone (SERVFAIL, say, is transient: never kept).
CACHED_RCODES = (RCODE.NOERROR, RCODE.NXDOMAIN, RCODE.REFUSED)


class Question(NamedTuple):
    """What the fast parser learns from a query without building objects (a tuple: made once per miss)."""

    key: bytes  # cache key: lower-cased question + answer-relevant bits
    qname_end: int  # offset just past QNAME in the query (question ends 4 later)
    udp_limit: int  # largest UDP response the client accepts
    qtype: int
    qclass: int
    edns: int  # -1: no OPT record; else the DO bit (0 or 1)
    labels: int  # labels in QNAME (0: the root); LONG_LABEL if one is longer than SHORT_LABEL bytes

    def plain_name(self) -> str | None:
        """The lower-cased QNAME as ``a.b.c.``, or None unless it is plain (see :func:`plain_name`)."""
        wire = self.key[: self.qname_end - 12]
        if self.labels == LONG_LABEL:
            return _plain_name_walked(wire)
        return _plain_text(wire, self.labels)


SHORT_LABEL = 44  # labels up to this long have a length byte that no plain label byte ("-", digits) can be
LONG_LABEL = -1


def parse_question(data: bytes, max_udp: int = MAX_MESSAGE) -> Question | None:
    """Fast path parse of an ordinary query; None means "take the slow path".

    ``max_udp`` is our own advertised payload size: a client asking for more
    gets no more (anti-amplification, as CoreDNS's ``bufsize``).
    """
    size = len(data)
    if size < 17:
        return None
    _, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if flags & 0xF800 or qdcount != 1 or ancount or nscount or arcount > 1:
        return None  # a response, an opcode other than QUERY, or something unusual
    offset = 12
    labels = 0
    long_label = False
    try:
        length = data[12]
        while length:
            if length > SHORT_LABEL:
                if length > MAX_LABEL:
                    return None  # compression pointer in a question: leave it to the full parser
                long_label = True
            offset += 1 + length
            labels += 1
            length = data[offset]
    except IndexError:
        return None  # the name runs past the end
    qname_end = offset + 1
    if qname_end + 4 > size or qname_end - 12 > MAX_NAME:
        return None  # short, or a name too long to be one (the slow path says FORMERR)
    qtype = (data[qname_end] << 8) | data[qname_end + 1]
    qclass = (data[qname_end + 2] << 8) | data[qname_end + 3]
    rest = qname_end + 4
    # RD and CD are echoed, so they are part of the key; so is EDNS presence/DO.
    rd_cd = _RD_CD[flags & 0x0110]
    if arcount:
        # Only a bare OPT record (root owner, type 41) is understood here.
        if rest + 11 > size or data[rest] != 0 or data[rest + 1 : rest + 3] != b"\x00\x29":
            return None
        payload = (data[rest + 3] << 8) | data[rest + 4]
        edns = 1 if data[rest + 7] & 0x80 else 0
        if data[rest + 6] != 0 or rest + 11 + ((data[rest + 9] << 8) | data[rest + 10]) != size:
            return None  # an EDNS version we do not speak, or bytes beyond the OPT record
        udp_limit = min(max(MIN_UDP_PAYLOAD, payload), max_udp)
        bits = rd_cd + (b"D" if edns else b"E")
    elif rest != size:
        return None
    else:
        udp_limit, edns, bits = MIN_UDP_PAYLOAD, -1, rd_cd + b"-"
    key = data[12:qname_end].lower() + data[qname_end:rest] + bits
    return Question(key, qname_end, udp_limit, qtype, qclass, edns, LONG_LABEL if long_label else labels)


_RD_CD = {flags: bytes((flags >> 8 & 0x01, flags & 0x10)) for flags in (0, 0x0010, 0x0100, 0x0110)}
_PLAIN_NAME = re.compile(rb"(?:[a-z0-9_-]+\.)+")
# Wire name → text in one pass: bytes below 64 (every length byte up to SHORT_LABEL, the final 0)
# become dots, other bytes a plain label cannot hold become 0xFF, plain bytes stay.  A plain
# name then has exactly one dot per length byte and no 0xFF: a non-plain byte below 64 inside a
# label adds a dot.  ("-" and digits, 45 and 48-57, stay themselves: hence SHORT_LABEL.)
_PLAIN_BYTES = b"abcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_TEXT = bytes(b if b in _PLAIN_BYTES else (0x2E if b < 64 else 0xFF) for b in range(256))


def _plain_text(wire: bytes, labels: int) -> str | None:
    """Lower-cased wire labels (``labels`` of them, none longer than SHORT_LABEL) → ``a.b.c.``; None unless plain."""
    if not labels:
        return None
    text = wire.translate(_TO_TEXT)  # ".a.b.c." for b"\x01a\x01b\x01c\x00"
    if text.count(b".") != labels + 1 or b"\xff" in text:
        return None
    return text[1:].decode("ascii")


def _plain_name_walked(wire: bytes) -> str | None:
    """:func:`plain_name` label by label (names with a label longer than SHORT_LABEL)."""
    labels = []
    offset = 0
    while True:
        length = wire[offset]
        if length == 0:
            break
        labels.append(wire[offset + 1 : offset + 1 + length])
        offset += 1 + length
    if not labels:
        return None
    text = b".".join(labels) + b"."
    if _PLAIN_NAME.fullmatch(text) is None:
        return None
    return text.decode("ascii")


def plain_name(wire: bytes) -> str | None:
    """Lower-cased wire labels → ``a.b.c.``; None unless every label is letters, digits, ``-`` or ``_``.

    Other bytes (dots inside a label, spaces, non-ASCII) need dnslib's escaping,
    and no such name is in the zone: the slow path answers those.
    """
    labels = 0
    offset = 0
    length = wire[0]
    while length:
        if length > SHORT_LABEL:
            return _plain_name_walked(wire)
        offset += 1 + length
        labels += 1
        length = wire[offset]
    return _plain_text(wire[: offset + 1], labels)


class Responder:
    """Answers wire-format queries from the zone, through the pre-encoded caches.

    A query is answered, in order of cost: by replaying the bytes sent for the
    same query bytes; by splicing the stored answer to the same question; by
    :mod:`~clusterdns.negative` when the zone says with a lookup that the name
    does not exist or lacks the type; or through dnslib and :func:`answer`.
    """

    def __init__(self, zone: Zone, cache_size: int = 100_000):
        self.zone = zone
        self.hosts = None  # hosts entries answered before the zone (see use_hosts)
        self.cache = AnswerCache(cache_size)
        self.max_udp = zone.settings.max_udp_size
        self.hits = 0
        self.misses = 0
        # Rotate A/AAAA records between cache hits (--loadbalance); off, the plans are None.
        self.loadbalance = False
        self._turn = 0
        # When the server forwards, names it does not serve go upstream; otherwise they are REFUSED.
        self.forwarding = False
        self.autopath: Autopath | None = None  # with --autopath: the server then passes client addresses
        pods = zone.settings.pods != "disabled"
        # Pod names are made up on the fly (answer.lookup): never a plain miss.
        self._pod_parent = f"pod.{zone.settings.zone}" if pods else None
        self._pod_suffix = f".pod.{zone.settings.zone}" if pods else None
        # For the plain negatives: the zones as ".origin" suffixes, longest first (as Zone.origin_for picks),
        # and the settings they read (a zone's settings never change: a reload builds a new zone and responder).
        self._origins = sorted(((f".{origin}", origin) for origin in zone.settings.zones), key=lambda o: -len(o[1]))
        self._explain = zone.settings.explain
        self._ttl = zone.settings.ttl
        self._recursion = zone.settings.recursion
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
        self.cache.clear()

    def forget(self, names: Iterable[str] | None) -> None:
        """Drop the answers that read any of ``names`` (None: all of them)."""
        self.cache.forget(names)

    def respond(self, data: bytes, udp: bool, client: str | None = None) -> tuple[bytes | None, int, int, bool]:
        """(response or None to drop, qtype, rcode, answered from the cache?) for one query.

        With forwarding on, rcode FORWARD means the "response" is the query, to
        send upstream; CHASE, a cluster answer whose CNAME target is upstream.
        ``client``, the query's source address, is given only with autopath.
        """
        if type(data) is not bytes:
            data = bytes(data)
        if client is not None and self.autopath is not None:
            namespace = self.autopath.namespace_of(client)
            if namespace is not None:
                searched = self._respond_searched(data, udp, self.autopath, namespace)
                if searched is not None:
                    return searched
        key = (udp, data[2:])
        exact = self.cache.exact
        replay = exact.get(key)
        if replay is not None:
            exact.move_to_end(key)
            self.hits += 1
            after_id, qtype, rcode, plan, _ = replay
            response = data[:2] + after_id
            if plan is not None:
                self._turn += 1
                response = rotate(response, plan, self._turn)
            return response, qtype, rcode, True
        question = parse_question(data, self.max_udp)
        if question is not None:
            by_question = self.cache.by_question
            cached = by_question.get(question.key)
            if cached is not None:
                stored, plan, names = cached
                # ID from the query, question (with its letter case) from the query.
                response = data[:2] + stored[2:12] + data[12 : question.qname_end] + stored[question.qname_end :]
                if not udp or len(response) <= question.udp_limit:
                    by_question.move_to_end(question.key)
                    self.hits += 1
                    self.cache.keep_exact(key, response, question.qtype, plan, names)
                    if plan is not None:
                        self._turn += 1
                        response = rotate(response, plan, self._turn)
                    return response, question.qtype, stored[3] & 0x0F, True
            if self.forwarding and self._goes_upstream(data, question):
                return data, question.qtype, FORWARD, False
            negative = self._negative(data, question, udp)
            if negative is not None:
                self.misses += 1
                response, rcode, names = negative
                if self.cache.admit(key):  # asked before: worth an entry (a name asked once, as in a flood, is not)
                    self.cache.keep_exact(key, response, question.qtype, None, names)  # no addresses to rotate
                return response, question.qtype, rcode, False
        self.misses += 1
        result, names = self._respond_slowly(data, question, udp)
        if names is not None and result[0] is not None and result[0][3] & 0x0F in CACHED_RCODES:
            # (the plan is computed on the bytes sent: glue may have been dropped to fit)
            plan = rotation_plan(result[0]) if self.loadbalance else None
            self.cache.keep_exact(key, result[0], result[1], plan, names)
        return (*result, False)

    def _respond_searched(
        self, data: bytes, udp: bool, autopath: Autopath, namespace: str
    ) -> tuple[bytes, int, int, bool] | None:
        """The autopath answer for a pod in ``namespace``; None: answer it ordinarily.

        Kept in the question tier under the namespace too (b"\xff" cannot start a
        normal key), marked: b"A" + the answer, b"C" + a CNAME for the forwarder to
        complete (CHASE), or b"" for "ordinary", so a repeat costs one lookup.
        """
        question = parse_question(data, self.max_udp)
        if question is None or not question.key[: question.qname_end - 12].endswith(autopath.suffix(namespace)):
            return None
        key = b"\xff" + namespace.encode() + b"\0" + question.key
        cached = self.cache.by_question.get(key)
        hit = cached is not None
        if cached is None:
            try:
                reply, names, outside = autopath.resolve(parse_query(data), namespace)
            except (DNSError, ValueError, IndexError, struct.error, UnicodeDecodeError):
                reply, names, outside = None, frozenset(), False
            if reply is None or outside and not self.forwarding:
                stored = b""
            else:
                stored = (b"C" if outside else b"A") + bytes(reply.pack())
            self.cache.keep_question(key, stored, None, tuple(names))
        else:
            stored = cached[0]
        if not stored:
            return None
        kind, stored = stored[:1], stored[1:]
        if kind == b"C":
            self.misses += 1
            partial = data[:2] + stored[2:12] + data[12 : question.qname_end] + stored[question.qname_end :]
            return partial, question.qtype, CHASE, False
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        response = data[:2] + stored[2:12] + data[12 : question.qname_end] + stored[question.qname_end :]
        if udp and len(response) > question.udp_limit:
            response = fit(DNSRecord.parse(response), question.udp_limit)
        return response, question.qtype, response[3] & 0x0F, hit

    def _goes_upstream(self, data: bytes, question: Question) -> bool:
        end = question.qname_end
        qclass = (data[end + 2] << 8) | data[end + 3]
        if qclass != CLASS_IN or question.qtype in (QTYPE.AXFR, QTYPE.IXFR):
            return False  # answered here (REFUSED), as without forwarding
        return not self.serves(question_name(data, end))

    def _negative(self, data: bytes, question: Question, udp: bool) -> tuple[bytes, int, Names] | None:
        """NXDOMAIN or NODATA without dnslib, when the zone says so with a lookup; None: not that simple."""
        qtype = question.qtype
        if question.qclass != CLASS_IN or qtype in _NOT_PLAIN_TYPES:
            return None
        zone = self.zone
        if not zone.complete:
            return None  # a miss answers SERVFAIL until the first sync (answer.py)
        name = question.plain_name()
        if name is None:
            return None
        origin = None
        for suffix, apex in self._origins:  # longest first, as Zone.origin_for picks
            if name == apex:
                return None  # an apex: its SOA is an answer
            if name.endswith(suffix):
                origin = apex
                break
        if origin is None:
            return None  # not ours (REFUSED or forwarded)
        if self._pod_suffix is not None and (name.endswith(self._pod_suffix) or name == self._pod_parent):
            return None
        if self.hosts is not None and self.hosts.serves(name):
            return None
        sets = zone.records(name)
        types: tuple[int, ...] = ()
        if sets is None:
            rcode = NOERROR if zone.exists(name) else NXDOMAIN
        elif sets.get(qtype) or _CNAME in sets:
            return None  # records to answer, or an alias to follow
        else:
            rcode, types = NOERROR, tuple(t for t, rds in sets.items() if rds)
        names: Names = (name,)
        option = b""
        if question.edns >= 0 and self._explain:
            # Why, in words (RFC 8914), as answer() would say it; the facts it read join the names.
            reader = Reader(zone)
            reason = reasons.explain(reader, name, qtype, rcode, types)
            if reason is not None:
                option = ede_option(reason.code, reason.text)
            names = (name, *(reader.names - {name}))
        tail = soa_tail(origin, zone.serial, self._ttl)
        response = encode_negative(data, question.qname_end, origin, tail, rcode, question.edns, self.max_udp, option,
                                   self._recursion)
        if udp and len(response) > question.udp_limit:
            return None  # a long name and reason: let the slow path trim it
        return response, rcode, names

    def _respond_slowly(
        self, data: bytes, question: Question | None, udp: bool
    ) -> tuple[tuple[bytes | None, int, int], Names | None]:
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
        reply, read = answer(self.zone, query, self.hosts)
        names = tuple(read)
        full = bytes(reply.pack())
        if self.forwarding and _leaves_zone(reply, qtype, self.serves):
            return (full, qtype, CHASE), None
        cacheable = question is not None and reply.header.rcode in CACHED_RCODES
        if cacheable and question is not None:
            self.cache.keep_question(question.key, full, rotation_plan(full) if self.loadbalance else None, names)
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
