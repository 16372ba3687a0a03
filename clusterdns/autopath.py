"""Server-side search path (CoreDNS ``autopath``, ``--autopath``).

A pod's resolver walks ``<ns>.svc.<zone>``, ``svc.<zone>``, ``<zone>`` and then
the name as written, one round trip each, and most of those are NXDOMAIN.
When a query from a known pod asks for ``X.<ns>.svc.<zone>`` (its first search
domain, so the resolver has started a walk for ``X``), the server does the
rest of the walk at once and answers with a CNAME from the asked name to the
first candidate that exists, followed by that candidate's records.

* The client is found by its source address among the pods the server knows
  (``--pods verified``).  Unknown addresses, hostNetwork pods (their address
  is the node's, shared by many), pods whose dnsPolicy is not ClusterFirst,
  and pods whose dnsConfig adds search domains (the server would skip them)
  get ordinary answers.
* When the asked name itself exists, the ordinary answer is given.  When
  nothing in the cluster does, the name as written is asked upstream
  (through forwarding: the forwarder completes the CNAME, as for an
  ExternalName); without forwarding the ordinary NXDOMAIN is given and the
  resolver goes on with its own walk.  Either way the final answer is the
  same as without autopath.
* The answer depends on the pod's namespace, not on the pod: the wire cache
  keeps it under the namespace and the question.
"""

from __future__ import annotations

from dnslib import CNAME, QTYPE, RCODE, RR, DNSHeader, DNSQuestion, DNSRecord

from .names import namespace_name
from .answer import answer
from .cluster import Cluster
from .objects import Pod
from .zone import Zone

SEARCHING_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet")


class Autopath:
    def __init__(self, cluster: Cluster, zone: Zone):
        self.cluster = cluster
        self.zone = zone
        self._suffixes: dict[str, bytes] = {}  # namespace → wire form of ".<ns>.svc.<zone>", lower case

    def namespace_of(self, client: str) -> str | None:
        """The namespace of the pod at ``client`` if autopath may answer for it."""
        key = self.cluster.pods_by_ip.get(client) if self.cluster.pods_by_ip is not None else None
        if key is None:
            return None
        pod = self.cluster.objects.get(key)
        if not isinstance(pod, Pod) or pod.host_network or pod.dns_policy not in SEARCHING_POLICIES:
            return None
        if pod.dns_config is not None and pod.dns_config.searches:
            return None
        return pod.namespace

    def suffix(self, namespace: str) -> bytes:
        """``.<ns>.svc.<zone>`` in wire form (length-prefixed labels, with the root's 0)."""
        wire = self._suffixes.get(namespace)
        if wire is None:
            if len(self._suffixes) > 10_000:
                self._suffixes.clear()  # bounded: namespaces come and go
            name = namespace_name(namespace, self.zone.settings.zone)
            wire = b"".join(bytes((len(label),)) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
            self._suffixes[namespace] = wire
        return wire

    def resolve(self, query: DNSRecord, namespace: str) -> tuple[DNSRecord | None, frozenset[str], bool]:
        """The autopath answer to ``query`` (None: answer it ordinarily), the names it read, and
        whether it is a CNAME to the name as written, outside the zones, to be completed upstream."""
        read: set[str] = set()
        reply, outside = self._resolve(query, namespace, read)
        return reply, frozenset(read), outside

    def _resolve(self, query: DNSRecord, namespace: str, read: set[str]) -> tuple[DNSRecord | None, bool]:
        if len(query.questions) != 1 or query.header.opcode != 0:
            return None, False
        question = query.questions[0]
        name = str(question.qname).lower()
        zone_name = self.zone.settings.zone
        suffix = f".{namespace}.svc.{zone_name}"
        if not name.endswith(suffix) or question.qtype in (QTYPE.AXFR, QTYPE.IXFR):
            return None, False
        base = name[: -len(suffix)]
        opts = [rr for rr in query.ar if rr.rtype == QTYPE.OPT]
        for candidate in (name, f"{base}.svc.{zone_name}", f"{base}.{zone_name}", f"{base}."):
            if self.zone.origin_for(candidate) is None:
                # Nothing in the cluster: the name as written, through forwarding (the CNAME alone
                # here; the forwarder adds the upstream's records, or its NXDOMAIN).
                return _chained(query, candidate, None, self.zone.settings.ttl), True
            sub = DNSRecord(
                DNSHeader(id=query.header.id, rd=query.header.rd, cd=query.header.cd),
                questions=[DNSQuestion(candidate, question.qtype, question.qclass)],
                ar=opts,
            )
            reply, names = answer(self.zone, sub)
            read |= names
            if reply.header.rcode == RCODE.NXDOMAIN:
                continue
            if reply.header.rcode != RCODE.NOERROR or candidate == name:
                return None, False  # SERVFAIL before sync, or the asked name exists: the ordinary answer
            return _chained(query, candidate, reply, self.zone.settings.ttl), False
        return None, False


def _chained(query: DNSRecord, candidate: str, reply: DNSRecord | None, ttl: int) -> DNSRecord:
    """``asked CNAME candidate`` followed by the candidate's answer (None: the CNAME alone)."""
    rcode = reply.header.rcode if reply is not None else RCODE.NOERROR
    header = DNSHeader(id=query.header.id, qr=1, aa=1, rd=query.header.rd, cd=query.header.cd, rcode=rcode)
    out = DNSRecord(header, questions=list(query.questions))
    out.add_answer(RR(query.questions[0].qname, QTYPE.CNAME, ttl=ttl, rdata=CNAME(candidate)))
    if reply is None:
        for rr in query.ar:
            if rr.rtype == QTYPE.OPT:
                out.add_ar(rr)
        return out
    for rr in reply.rr:
        out.add_answer(rr)
    for rr in reply.auth:
        out.add_auth(rr)
    for rr in reply.ar:
        out.add_ar(rr)
    return out
