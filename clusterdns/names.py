"""The grammar of cluster names: how each kind of name is built, and how a pod label is read back.

One place, as CoreDNS keeps ``plugin/kubernetes/parse.go``, for the names of
the Kubernetes DNS specification (schema 1.1.0), all lower case and absolute:

* ``<service>.<ns>.svc.<zone>`` — a Service (:func:`service_name`);
* ``<ns>.svc.<zone>`` — its namespace, an empty non-terminal (:func:`namespace_name`);
* ``<endpoint>.<service>.<ns>.svc.<zone>`` — an endpoint: hostname, pod name or
  dashed IP (:func:`endpoint_name`, :func:`dashed`);
* ``_<port>._<proto>.<service>.<ns>.svc.<zone>`` — a named port's SRV owner (:func:`srv_owner`);
* ``<a-b-c-d>.<ns>.pod.<zone>`` — a pod by address (:func:`pod_name`, read back by :func:`pod_ip`);
* ``d.c.b.a.in-addr.arpa.`` / nibbles under ``ip6.arpa.`` — a reverse name (:func:`reverse_name`).

records.py builds the zone with these; answer.py and reasons.py read names
with them.
"""

from __future__ import annotations

import ipaddress
import socket


def service_name(namespace: str, service: str, zone: str) -> str:
    return f"{service}.{namespace}.svc.{zone}"


def namespace_name(namespace: str, zone: str) -> str:
    return f"{namespace}.svc.{zone}"


def endpoint_name(label: str, service_fqdn: str) -> str:
    return f"{label}.{service_fqdn}"


def srv_owner(port: str, protocol: str, service_fqdn: str) -> str:
    """``_http._tcp.<service>``: where the SRV records of one named port live."""
    return f"_{port}._{protocol.lower()}.{service_fqdn}"


def pod_parent(zone: str) -> str:
    """``pod.<zone>``: the parent of every pod name."""
    return f"pod.{zone}"


def pod_name(label: str, namespace: str, zone: str) -> str:
    """``<label>.<ns>.pod.<zone>``, the label a dashed IP (or, with --pod-names, the pod's name)."""
    return f"{label}.{namespace}.pod.{zone}"


def dashed(ip: str) -> str:
    """``10.1.2.3`` → ``10-1-2-3``; ``fd00::1`` → ``fd00--1`` (CoreDNS's endpoint and pod names)."""
    return ip.replace(".", "-").replace(":", "-")


def _plain_ipv4(text: str) -> bool:
    """``text`` is an IPv4 address written the one way ipaddress writes it (dotted quad, no leading zeros).

    The C library checks it in a fraction of ipaddress's time; a zone load
    checks every address of every object once or twice.
    """
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text)) == text
    except (OSError, ValueError):  # not IPv4 (or not text socket takes): ipaddress decides
        return False


def canonical_ip(text: str) -> str | None:
    """``text`` as ipaddress spells the address (IPv6 compressed, lower case), or None if it is no address."""
    if _plain_ipv4(text):
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def pod_ip(label: str) -> str | None:
    """``10-1-2-3`` → ``10.1.2.3``, ``fd00--1`` → ``fd00::1`` (the inverse of :func:`dashed`); None if not an address."""
    if label.count("-") == 3 and "--" not in label:
        text = label.replace("-", ".")
    else:
        text = label.replace("-", ":")
    return canonical_ip(text)


def is_ip(text: str) -> bool:
    return canonical_ip(text) is not None


def reverse_name(ip: str) -> str:
    """The PTR owner of ``ip``: ``4.3.2.1.in-addr.arpa.`` or the nibbles under ``ip6.arpa.``."""
    if _plain_ipv4(ip):
        a, b, c, d = ip.split(".")
        return f"{d}.{c}.{b}.{a}.in-addr.arpa."
    return ipaddress.ip_address(ip).reverse_pointer + "."
