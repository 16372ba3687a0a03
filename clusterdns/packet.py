"""Walk a DNS message's sections in its bytes, without building objects.

Used where a parse by dnslib would cost more than the job: finding the
address records a load-balanced answer rotates, and reading the fields of
the query log.  Every function here is bounds-checked: a malformed message
raises :class:`PacketError`, never anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

ANSWER, AUTHORITY, ADDITIONAL = 1, 2, 3
MAX_POINTERS = 64  # a name with more compression pointers than this is a loop


class PacketError(ValueError):
    """The bytes are not a well-formed DNS message."""


@dataclass(frozen=True, slots=True)
class Record:
    section: int  # ANSWER, AUTHORITY or ADDITIONAL
    start: int  # offset of the owner name
    owner_end: int  # offset just past the owner name
    rtype: int
    rclass: int
    ttl: int
    end: int  # offset just past the rdata


def name_end(data: bytes, offset: int) -> int:
    """Offset just past the (possibly compressed) name at ``offset``."""
    while True:
        if offset >= len(data):
            raise PacketError("name runs past the end")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 2 > len(data):
                raise PacketError("truncated compression pointer")
            return offset + 2
        if length & 0xC0:
            raise PacketError("unknown label type")
        if length == 0:
            return offset + 1
        offset += 1 + length


def read_name(data: bytes, offset: int) -> str:
    """The name at ``offset`` in presentation form (``example.com.``), following pointers."""
    labels: list[str] = []
    for _ in range(MAX_POINTERS):
        while True:
            if offset >= len(data):
                raise PacketError("name runs past the end")
            length = data[offset]
            if length & 0xC0 == 0xC0:
                if offset + 2 > len(data):
                    raise PacketError("truncated compression pointer")
                offset = ((length & 0x3F) << 8) | data[offset + 1]
                break
            if length & 0xC0:
                raise PacketError("unknown label type")
            if length == 0:
                return ".".join(labels) + "." if labels else "."
            label = data[offset + 1 : offset + 1 + length]
            if len(label) != length:
                raise PacketError("label runs past the end")
            labels.append(_label_text(label))
            offset += 1 + length
    raise PacketError("compression pointer loop")


def _label_text(label: bytes) -> str:
    """As dig and miekg/dns print a label: ``\\.`` for a dot, ``\\DDD`` for bytes outside printable ASCII."""
    out = []
    for byte in label:
        if byte in b'.\\"();@$':
            out.append("\\" + chr(byte))
        elif 0x21 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def question_end(data: bytes) -> int:
    """Offset just past the question section."""
    if len(data) < 12:
        raise PacketError("shorter than a header")
    offset = 12
    for _ in range(int.from_bytes(data[4:6], "big")):
        offset = name_end(data, offset) + 4
    if offset > len(data):
        raise PacketError("question runs past the end")
    return offset


def records(data: bytes) -> Iterator[Record]:
    """Every resource record after the question, in order."""
    offset = question_end(data)
    counts = (int.from_bytes(data[6:8], "big"), int.from_bytes(data[8:10], "big"), int.from_bytes(data[10:12], "big"))
    for section, count in zip((ANSWER, AUTHORITY, ADDITIONAL), counts):
        for _ in range(count):
            owner_end = name_end(data, offset)
            if owner_end + 10 > len(data):
                raise PacketError("record header runs past the end")
            rtype = (data[owner_end] << 8) | data[owner_end + 1]
            rclass = (data[owner_end + 2] << 8) | data[owner_end + 3]
            ttl = int.from_bytes(data[owner_end + 4 : owner_end + 8], "big")
            end = owner_end + 10 + ((data[owner_end + 8] << 8) | data[owner_end + 9])
            if end > len(data):
                raise PacketError("rdata runs past the end")
            yield Record(section, offset, owner_end, rtype, rclass, ttl, end)
            offset = end
