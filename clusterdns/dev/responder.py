"""One DNS front for every context: route a query to the zone that holds its name.

* A name under a context's zone (``cluster.local``, ``staging.k8s``, the
  reverse zones of the current context) goes to that zone's own
  :class:`~clusterdns.wire.Responder`, with its pre-encoded caches.
* Names under the suffix that no context holds (``nope.k8s``) are answered by
  an empty zone for the suffix itself: NXDOMAIN, never forwarded.
* Short forms for the current context, ``svc.ns`` and ``svc`` (in the
  context's namespace), are answered as ``svc.ns.svc.cluster.local`` would be,
  under the name that was asked, when such a Service exists; otherwise the
  name is an ordinary outside name (``github.com`` is not service ``github``
  of namespace ``com`` unless there is one).
* Everything else is forwarded, or REFUSED when forwarding is off.

It is a :class:`~clusterdns.server.Answers`, what :class:`~clusterdns.server.DnsServer` asks of a responder.
"""

from __future__ import annotations

import struct

from dnslib import RCODE, DNSError, DNSLabel, DNSRecord

from ..wire import FORWARD, formerr, parse_question, question_name
from ..zone import Zone
from .context_dns import View


class DevResponder:
    # Several zones, one per context: no zone transfers (an AXFR is answered as any other query).
    zone: Zone | None = None

    def __init__(self, routes: list[tuple[str, View]], short_forms: View | None, namespace: str, forwarding: bool):
        # Longest origin first, so staging.k8s wins over k8s.
        self.routes = sorted(routes, key=lambda r: -len(r[0]))
        self.short_forms = short_forms
        self.namespace = namespace
        self.forwarding = forwarding

    @property
    def hits(self) -> int:
        return sum(view.responder.hits for _, view in self.routes)

    def view_for(self, name: str) -> View | None:
        for origin, view in self.routes:
            if name == origin or name.endswith("." + origin):
                return view
        return None

    def respond(self, data: bytes, udp: bool, client: str | None = None) -> tuple[bytes | None, int, int, bool]:
        """As :meth:`Responder.respond`: (response or None, qtype, rcode, answered from a cache?).

        ``client`` is never given: there is no autopath here.
        """
        data = bytes(data)
        question = parse_question(data)
        if question is not None:
            name, qtype = question_name(data, question.qname_end), question.qtype
        else:
            try:
                query = DNSRecord.parse(data)
            except (DNSError, ValueError, IndexError, struct.error, UnicodeDecodeError):
                return formerr(data), 0, RCODE.FORMERR, False
            if query.header.qr or len(query.questions) != 1:
                return self.routes[-1][1].responder.respond(data, udp)  # the zone's own rules (drop, FORMERR)
            name, qtype = str(query.questions[0].qname).lower(), query.questions[0].qtype
        view = self.view_for(name)
        if view is not None:
            return view.responder.respond(data, udp)
        target = self._short_form(name)
        if target is not None:
            return self._answer_as(data, target, udp)
        if self.forwarding:
            return data, qtype, FORWARD, False  # the server hands it to the forwarder
        return self.routes[-1][1].responder.respond(data, udp)  # outside every zone: REFUSED, as serve says it

    # ------------------------------------------------------------------ short forms

    def _short_form(self, name: str) -> str | None:
        """``api.shop.`` → ``api.shop.svc.cluster.local.`` when that Service exists (``api.`` in the context's namespace)."""
        view = self.short_forms
        if view is None:
            return None
        labels = name.rstrip(".").split(".")
        if len(labels) == 1 and labels[0]:
            labels.append(self.namespace)
        if len(labels) != 2:
            return None
        target = f"{labels[0]}.{labels[1]}.svc.{view.settings.zone}"
        if view.zone.records(target) is None and not view.zone.exists(target):
            return None
        return target

    def _answer_as(self, data: bytes, target: str, udp: bool) -> tuple[bytes | None, int, int, bool]:
        """Answer for ``target`` under the name that was asked (its letter case kept)."""
        query = DNSRecord.parse(data)
        asked = query.questions[0].qname
        query.questions[0].qname = DNSLabel(target)
        assert self.short_forms is not None  # _short_form found target there
        response, qtype, rcode, hit = self.short_forms.responder.respond(bytes(query.pack()), udp)
        if response is None or rcode < 0:
            return response, qtype, rcode, hit
        reply = DNSRecord.parse(response)
        reply.questions[0].qname = asked
        wanted = DNSLabel(target)
        for rr in (*reply.rr, *reply.auth):
            if rr.rname == wanted:
                rr.rname = asked
        return bytes(reply.pack()), qtype, rcode, hit


