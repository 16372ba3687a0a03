"""Rotate address records between responses (CoreDNS's ``loadbalance`` plugin), in the encoded bytes.

Without it every client of a headless service, or of a name with several
addresses, gets them in the same order and connects to the same one first.
CoreDNS shuffles the parsed records of each response; here a cached response
is rotated as bytes: the A (or AAAA) records of one owner sit side by side,
all of one size, so turning the run is two slices and a join, no re-encoding.

A run qualifies only when every record's owner is the same compression
pointer: then no name lives inside the run, so nothing elsewhere in the
message can point into it and moving its records cannot break a pointer.
"""

from __future__ import annotations

from .packet import AUTHORITY, PacketError, records

TYPE_A, TYPE_AAAA, TYPE_AXFR, TYPE_IXFR = 1, 28, 252, 251

Plan = tuple[tuple[int, int, int], ...]  # (offset, record size, record count) of each run to rotate


def rotation_plan(packet: bytes) -> Plan | None:
    """Where the rotatable runs of ``packet`` are; None when there is nothing to rotate.

    As CoreDNS: NOERROR responses only, never a zone transfer; the answer and
    additional sections (the authority section holds no addresses to balance).
    """
    if len(packet) < 12 or packet[3] & 0x0F:
        return None
    try:
        rrs = list(records(packet))
        if rrs and packet[rrs[0].start - 4 : rrs[0].start - 2] in (b"\x00\xfc", b"\x00\xfb"):
            return None  # AXFR/IXFR
    except PacketError:
        return None
    runs = []
    i = 0
    while i < len(rrs):
        first = rrs[i]
        j = i + 1
        owner = packet[first.start : first.owner_end]
        if first.rtype in (TYPE_A, TYPE_AAAA) and first.section != AUTHORITY and len(owner) == 2 and owner[0] >= 0xC0:
            size = first.end - first.start
            while (
                j < len(rrs)
                and rrs[j].section == first.section
                and rrs[j].rtype == first.rtype
                and rrs[j].end - rrs[j].start == size
                and packet[rrs[j].start : rrs[j].owner_end] == owner
            ):
                j += 1
            if j - i > 1:
                runs.append((first.start, size, j - i))
        i = j
    return tuple(runs) or None


def rotate(packet: bytes, plan: Plan, turn: int) -> bytes:
    """``packet`` with each run of ``plan`` turned left by ``turn`` records."""
    parts: list[bytes] = []
    done = 0
    for start, size, count in plan:
        shift = turn % count
        if shift:
            cut, end = start + shift * size, start + count * size
            parts += (packet[done:start], packet[cut:end], packet[start:cut])
            done = end
    if not parts:
        return packet
    parts.append(packet[done:])
    return b"".join(parts)
