"""NXDOMAIN and NODATA encoded straight from the query's bytes, without building DNS objects.

Most of a cluster's queries are misses (``ndots:5`` tries every search domain
first), and a flood of unique names is nothing but misses.  A negative answer
is the query's header with the answer bits set, the query's own question bytes
(its letter case echoed), one SOA in the authority section and the OPT echo:

* the SOA's owner is the zone apex, which is a suffix of the question's name,
  so it is written as a compression pointer into the question, and so are the
  apex labels ending its MNAME and RNAME (the same bytes dnslib would write);
* the rest depends only on (apex, serial, TTL) and is encoded once per serial
  (:func:`soa_tail`);
* the OPT record advertises our payload size and echoes DO; an optional EDNS
  option (the Extended DNS Error saying why, computed with the zone) goes in it.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from dnslib import RCODE

SOA = 6
CLASS_IN = 1
OPT = 41
DO_BIT = 0x8000
EDE_OPTION = 15  # RFC 8914
_COUNTS = struct.Struct("!HHHH")  # qd, an, ns, ar
_OPT = struct.Struct("!BHHBBHH")  # root owner, type, payload size, ext rcode, version, flags, rdlength


def encode_name(name: str) -> bytes:
    """``cluster.local.`` → wire labels (no compression)."""
    return b"".join(bytes((len(label),)) + label.encode("ascii") for label in name.rstrip(".").split(".")) + b"\0"


@lru_cache(maxsize=16)
def soa_tail(origin: str, serial: int, ttl: int) -> tuple[bytes, bytes, bytes]:
    """The SOA of ``origin`` (as answer.py's) after its owner, in three parts split where a pointer to the apex goes.

    (type, class, TTL, RDLENGTH and MNAME's own labels ``ns.dns``; RNAME's own
    label ``hostmaster``; serial, refresh, retry, expire, minimum).
    """
    mname, rname = encode_name("ns.dns.")[:-1], encode_name("hostmaster.")[:-1]
    numbers = struct.pack("!IIIII", serial, 7200, 1800, 86400, ttl)
    rdlength = len(mname) + 2 + len(rname) + 2 + len(numbers)
    return struct.pack("!HHIH", SOA, CLASS_IN, ttl, rdlength) + mname, rname, numbers


def ede_option(code: int, text: str) -> bytes:
    """An Extended DNS Error option (RFC 8914): option code, length, info code, EXTRA-TEXT."""
    data = struct.pack("!H", code) + text.encode()
    return struct.pack("!HH", EDE_OPTION, len(data)) + data


def encode_negative(query: bytes, qname_end: int, origin: str, tail: tuple[bytes, bytes, bytes], rcode: int,
                    edns: int, payload: int, option: bytes = b"", ra: bool = False) -> bytes:
    """The negative response to ``query``.

    ``qname_end`` is the offset just past the question's name, ``origin`` the
    apex (a label-aligned suffix of that name, in plain ASCII), ``tail`` its
    :func:`soa_tail`; ``edns`` is -1 without OPT, else the query's DO bit
    (0 or 1); ``payload`` the UDP size we advertise; ``option`` one encoded
    EDNS option or nothing; ``ra`` sets RA, as answer() does when the server forwards.
    """
    # QR and AA set; RD and CD echoed; opcode QUERY (the caller checked); RA when forwarding; AD, TC clear.
    flags = (0x8400 | (query[2] & 0x01) << 8 | (query[3] & 0x10) | (0x0080 if ra else 0) | rcode).to_bytes(2, "big")
    pointer = _POINTERS[qname_end - len(origin) - 1]  # where the apex starts in the question
    head, rname, numbers = tail
    if edns < 0:
        return b"".join((query[:2], flags, _COUNTS_NO_OPT, query[12:qname_end + 4], pointer, head, pointer, rname,
                         pointer, numbers))
    return b"".join((query[:2], flags, _COUNTS_OPT, query[12:qname_end + 4], pointer, head, pointer, rname, pointer,
                     numbers, _OPT.pack(0, OPT, payload, 0, 0, DO_BIT if edns else 0, len(option)), option))


_COUNTS_NO_OPT = _COUNTS.pack(1, 0, 1, 0)  # one question, no answer, one authority (the SOA), no additional
_COUNTS_OPT = _COUNTS.pack(1, 0, 1, 1)  # and the OPT record
_POINTERS = [(0xC000 | offset).to_bytes(2, "big") for offset in range(12 + 256)]  # to the apex, inside the question


NXDOMAIN = RCODE.NXDOMAIN
NOERROR = RCODE.NOERROR
