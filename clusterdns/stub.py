"""A pod's stub resolver walking its search path: which queries it sends, and where it stops.

:func:`walk` takes the candidates from :func:`.searchpath.candidates` and an
``ask`` function (the manifests in-process, a running server over the
network, or a synced live cluster: :mod:`.explain` provides them), and models
how the resolver a pod runs reacts to each answer:

* glibc (``getaddrinfo``): A and AAAA for each name, in parallel on one socket
  (``single-request``: one after the other; ``single-request-reopen``: the
  second on a new socket; ``no-aaaa``: A only).  NXDOMAIN, NODATA and
  SERVFAIL go on to the next candidate; REFUSED (or any other error) and a
  timeout after ``attempts`` tries of ``timeout`` seconds end the lookup.  A
  truncated UDP answer is asked again over TCP (``use-vc``: TCP from the start).
* musl: the same queries, but the walk ends at the first answer that is not
  NXDOMAIN: a NODATA for one name is the name's final answer, and SERVFAIL
  ends it too.  A name with ``ndots`` dots or more gets no search list at all,
  and ``res_search`` (a TYPE other than A/AAAA) is ``res_query``: no search.
  Before 1.2.4 (``musl-old``) a truncated answer is used as it is, with no
  TCP retry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import dns.rcode

from .searchpath import ResolvConf, candidates

ADDRESS_TYPES = ("A", "AAAA")


@dataclass(frozen=True)
class Reply:
    """One response, as the walk needs it."""

    rcode: int
    answers: tuple[str, ...] = ()  # "A 10.96.0.1", "CNAME x.example."
    truncated: bool = False
    reason: tuple[int, str] | None = None  # EDE (code, text)
    outside: bool = False  # not a cluster name, and this source has no upstream: not asked


# ask(name, qtype, tcp) → the reply, or None when no reply came in ``timeout`` seconds.
Ask = Callable[[str, str, bool, float], Reply | None]


@dataclass
class Query:
    qtype: str
    rcode: str  # "NOERROR", "NXDOMAIN", ..., "TIMEOUT"
    answers: tuple[str, ...] = ()
    reason: str = ""
    reason_code: int | None = None
    transport: str = "udp"  # "udp", "tcp", "udp+tcp" (retried after TC)
    tries: int = 1

    @property
    def nodata(self) -> bool:
        return self.rcode == "NOERROR" and not self.answers


@dataclass
class Step:
    name: str
    queries: list[Query]
    outcome: str  # "answered", "next" (the walk goes on), "stop" (the lookup ends here without an answer)


@dataclass
class Walk:
    name: str
    resolver: str
    qtypes: tuple[str, ...]
    sending: str  # how the queries of one candidate are sent
    why: str  # the search-path rule that applies to the name
    steps: list[Step] = field(default_factory=list)

    @property
    def winner(self) -> int | None:
        """1-based number of the candidate that answered."""
        for number, step in enumerate(self.steps, start=1):
            if step.outcome == "answered":
                return number
        return None

    @property
    def query_count(self) -> int:
        return sum(q.tries + (q.transport == "udp+tcp") for step in self.steps for q in step.queries if q.rcode != "-")


def walk(name: str, conf: ResolvConf, ask: Ask, resolver: str = "glibc", qtype: str | None = None) -> Walk:
    """Ask what the resolver would ask for ``name`` (``qtype`` None: an address lookup, A and AAAA)."""
    if qtype is None:
        qtypes = ("A",) if conf.has("no-aaaa") and resolver == "glibc" else ADDRESS_TYPES
    else:
        qtypes = (qtype,)
    names = candidates(name, conf, resolver)
    if resolver != "glibc" and qtype is not None and not name.endswith("."):
        names = [name + "."]  # musl's res_search is res_query: the name as given, no search list
    result = Walk(name, resolver, qtypes, _sending(conf, resolver, qtypes), _why(name, conf, resolver, qtype))
    for candidate in names:
        queries = [_ask(ask, candidate, t, conf, resolver) for t in qtypes]
        outcome = _outcome(queries, resolver)
        result.steps.append(Step(candidate, queries, outcome))
        if outcome != "next":
            break
    return result


def _ask(ask: Ask, name: str, qtype: str, conf: ResolvConf, resolver: str) -> Query:
    tcp = conf.has("use-vc") and resolver == "glibc"
    attempt, reply = 0, None
    while reply is None and attempt < conf.attempts:
        attempt += 1
        reply = ask(name, qtype, tcp, float(conf.timeout))
    if reply is None:
        return Query(qtype, "TIMEOUT", reason=f"no reply after {conf.attempts} tries of {conf.timeout}s", tries=conf.attempts)
    transport = "tcp" if tcp else "udp"
    if reply.truncated and not tcp:
        if resolver == "musl-old":
            transport = "udp (truncated, no TCP retry before musl 1.2.4)"
        else:
            retried = ask(name, qtype, True, float(conf.timeout))
            transport = "udp+tcp"
            if retried is None:
                return Query(qtype, "TIMEOUT", reason="no reply over TCP after a truncated UDP answer", transport=transport, tries=attempt)
            reply = retried
    if reply.outside:
        return Query(qtype, "-", reason="outside the cluster zones: a pod's cluster DNS forwards it; not asked here")
    code, text = reply.reason if reply.reason else (None, "")
    return Query(qtype, dns.rcode.Rcode.to_text(reply.rcode), reply.answers, text, code, transport, attempt)


def _outcome(queries: list[Query], resolver: str) -> str:
    if any(q.answers for q in queries) and resolver == "glibc":
        return "answered"
    if all(q.rcode == "-" for q in queries):
        return "next"  # not known here; an upstream would most likely say NXDOMAIN
    if resolver == "glibc":
        if any(q.rcode not in ("NOERROR", "NXDOMAIN", "SERVFAIL") for q in queries):
            return "stop"  # REFUSED, FORMERR, NOTIMP: NO_RECOVERY; a timeout: TRY_AGAIN
        return "next"
    for q in queries:  # musl's name_from_dns, in query order
        if q.rcode in ("SERVFAIL", "TIMEOUT"):
            return "stop"  # EAI_AGAIN
        if q.rcode == "NXDOMAIN":
            return "next"
        if q.rcode != "NOERROR":
            return "stop"  # EAI_FAIL
    return "answered" if any(q.answers for q in queries) else "stop"  # EAI_NODATA ends the search


def _sending(conf: ResolvConf, resolver: str, qtypes: tuple[str, ...]) -> str:
    if len(qtypes) == 1:
        return f"{qtypes[0]} only"
    if resolver == "glibc" and conf.has("single-request-reopen"):
        return "A, then AAAA on a new socket (single-request-reopen)"
    if resolver == "glibc" and conf.has("single-request"):
        return "A, then AAAA (single-request)"
    return "A and AAAA in parallel"


def _why(name: str, conf: ResolvConf, resolver: str, qtype: str | None) -> str:
    dots = name.rstrip(".").count(".")
    if name.endswith("."):
        return "ends with a dot: asked exactly as written"
    if resolver != "glibc" and qtype is not None:
        return "musl's res_search does not use the search list: asked as written"
    if dots >= conf.ndots:
        if resolver != "glibc":
            return f"has {dots} dot(s), at least ndots:{conf.ndots}: musl asks it as written only"
        return f"has {dots} dot(s), at least ndots:{conf.ndots}: tried as written first, then with each search domain"
    return f"has {dots} dot(s), fewer than ndots:{conf.ndots}: each search domain first, as written last"
