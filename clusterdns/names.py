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


def pod_ip(label: str) -> str | None:
    """``10-1-2-3`` → ``10.1.2.3``, ``fd00--1`` → ``fd00::1`` (the inverse of :func:`dashed`); None if not an address."""
    if label.count("-") == 3 and "--" not in label:
        text = label.replace("-", ".")
    else:
        text = label.replace("-", ":")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def reverse_name(ip: str) -> str:
    """The PTR owner of ``ip``: ``4.3.2.1.in-addr.arpa.`` or the nibbles under ``ip6.arpa.``."""
    return ipaddress.ip_address(ip).reverse_pointer + "."
