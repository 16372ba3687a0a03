"""``--log-queries``: one line per query on stdout, in CoreDNS's ``log`` plugin format.

    [INFO] 127.0.0.1:52870 - 4352 "A IN kubia.default.svc.cluster.local. udp 50 false 512" NOERROR qr,aa,rd 92 0.000066s

That is ``{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do}
{>bufsize}" {rcode} {>rflags} {rsize} {duration}``: the client, the query ID,
the question (name lower-cased), the transport, the query's size, its DO bit,
the response size it accepts (65535 over TCP, as CoreDNS), then the response's
rcode, header flags and size, and the time taken.  Tools that parse CoreDNS's
query log read these lines unchanged.

``classes`` filters as ``log { class ... }`` does, by CoreDNS's classification
of the response: ``success`` (an answer, a referral), ``denial`` (NXDOMAIN,
NODATA), ``error`` (SERVFAIL, REFUSED, FORMERR, ...), ``all``.

The server builds a different per-query callback when the log is on, so with
the log off queries pay nothing for it.
"""

from __future__ import annotations

import sys
import time
from decimal import Decimal
from typing import Callable

from dnslib import QTYPE

from .packet import ADDITIONAL, ANSWER, AUTHORITY, PacketError, name_end, read_name, records

CLASSES = ("all", "success", "denial", "error")
TYPE_SOA, TYPE_OPT, TYPE_AXFR, TYPE_IXFR = 6, 41, 252, 251
MIN_UDP, MAX_TCP = 512, 65535
EMPTY = "-"  # CoreDNS's value for a field it cannot fill

# miekg/dns RcodeToString; 16 is BADSIG there (BADVERS shares the number).
RCODES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 6: "YXDOMAIN",
    7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADSIG", 17: "BADKEY", 18: "BADTIME",
    19: "BADMODE", 20: "BADNAME", 21: "BADALG", 22: "BADTRUNC", 23: "BADCOOKIE",
}
CLASS_NAMES = {1: "IN", 2: "CS", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}  # miekg/dns's spelling
FLAGS = (("qr", 0x8000), ("aa", 0x0400), ("tc", 0x0200), ("rd", 0x0100), ("ra", 0x0080), ("z", 0x0040),
         ("ad", 0x0020), ("cd", 0x0010))


def parse_classes(text: str) -> frozenset[str]:
    """``denial,error`` (or spaces) → the classes; ValueError naming a wrong one."""
    classes = frozenset(c for c in text.replace(",", " ").split())
    unknown = sorted(classes - set(CLASSES))
    if unknown or not classes:
        raise ValueError(f"unknown query log class {', '.join(unknown) or repr(text)}: expected {', '.join(CLASSES)}")
    return classes


class QueryLog:
    """Writes one line per answered query; ``write`` defaults to stdout."""

    def __init__(self, classes: frozenset[str] = frozenset({"all"}), write: Callable[[str], object] | None = None):
        self.classes = frozenset(classes)
        self.everything = "all" in self.classes
        self._write = write

    def __call__(self, proto: str, addr, query: bytes, response: bytes, started: float) -> None:
        duration = time.perf_counter() - started
        if not self.everything and response_class(response) not in self.classes:
            return
        line = format_line(proto, addr, query, response, duration)
        if self._write is not None:
            self._write(line)
        else:
            sys.stdout.write(line + "\n")


def format_line(proto: str, addr, query: bytes, response: bytes, duration: float) -> str:
    host, port = addr[0], addr[1]
    remote = f"[{host}]" if ":" in host else host
    msg_id = str(int.from_bytes(query[:2], "big")) if len(query) >= 2 else EMPTY
    qtype_name = qclass_name = name = EMPTY
    do, bufsize = False, MIN_UDP
    try:
        if int.from_bytes(query[4:6], "big"):
            end = name_end(query, 12)
            if end + 4 > len(query):
                raise PacketError("question runs past the end")
            name = read_name(query, 12).lower()
            qtype = int.from_bytes(query[end : end + 2], "big")
            qclass = int.from_bytes(query[end + 2 : end + 4], "big")
            qtype_name = str(QTYPE.get(qtype)) if qtype in QTYPE.forward else f"TYPE{qtype}"
            qclass_name = CLASS_NAMES.get(qclass, f"CLASS{qclass}")
        for rr in records(query):
            if rr.section == ADDITIONAL and rr.rtype == TYPE_OPT:
                do, bufsize = bool(rr.ttl & 0x8000), max(MIN_UDP, rr.rclass)
    except PacketError:
        pass
    if proto == "tcp":
        bufsize = MAX_TCP
    rcode = RCODES.get(_rcode(response))
    flags = int.from_bytes(response[2:4], "big")
    rflags = ",".join(name for name, bit in FLAGS if flags & bit)
    return (
        f'[INFO] {remote}:{port} - {msg_id} "{qtype_name} {qclass_name} {name} {proto} {len(query)} '
        f'{"true" if do else "false"} {bufsize}" {rcode or _rcode(response)} {rflags or EMPTY} {len(response)} '
        f"{_seconds(duration)}"
    )


def _rcode(response: bytes) -> int:
    """The rcode with its extended bits from the OPT record, if any."""
    rcode = response[3] & 0x0F
    try:
        for rr in records(response):
            if rr.section == ADDITIONAL and rr.rtype == TYPE_OPT:
                rcode |= (rr.ttl >> 24) << 4
    except PacketError:
        pass
    return rcode


def _seconds(duration: float) -> str:
    """As Go's ``strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"`` on a nanosecond duration."""
    text = format(Decimal(repr(round(duration * 1e9) / 1e9)), "f")
    return (text.rstrip("0").rstrip(".") if "." in text else text) + "s"


def response_class(response: bytes) -> str:
    """CoreDNS's ``response.Classify(response.Typify(msg))``: success, denial or error."""
    rcode = _rcode(response)
    opcode = (response[2] >> 3) & 0x0F
    if opcode in (4, 5):  # NOTIFY, UPDATE
        return "error"
    try:
        end = name_end(response, 12) if int.from_bytes(response[4:6], "big") else 12
        qtype = int.from_bytes(response[end : end + 2], "big") if end > 12 else 0
        if qtype in (TYPE_AXFR, TYPE_IXFR):
            return "error"
        answers, soa = [], False
        for rr in records(response):
            if rr.section == ANSWER:
                answers.append(rr.rtype)
            elif rr.section == AUTHORITY:
                soa = soa or rr.rtype == TYPE_SOA
    except PacketError:
        return "error"
    if answers and rcode == 0 and qtype in answers:
        return "success"
    if rcode == 0 and (soa or answers):
        return "denial"  # NODATA; a CNAME alone also counts as NODATA in CoreDNS
    if rcode == 3 and soa:
        return "denial"
    if rcode == 0:
        return "success"  # a referral, or an empty NOERROR
    return "error"
