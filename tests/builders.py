"""Small builders for Kubernetes objects as their API JSON, read through clusterdns.objects."""

from __future__ import annotations

from clusterdns.objects import read_object


def service(name, ns="default", cluster_ip="10.96.0.100", ports=(("http", 80, None),), selector=None, **spec):
    body = {
        "ports": [{"name": n, "port": p, **({"targetPort": t} if t is not None else {})} for n, p, t in ports],
        **spec,
    }
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
    if selector:
        body["selector"] = selector
    return read_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": body})


def pod(name, ip, ns="default", labels=None, ready=True, hostname=None, subdomain=None, ports=(), phase="Running", terminating=False):
    ips = [ip] if isinstance(ip, str) else list(ip)
    spec = {"containers": [{"name": "c", "ports": [{"name": n, "containerPort": p} for n, p in ports]}]}
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    return read_object(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name, "namespace": ns, "labels": labels or {},
                **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if terminating else {}),
            },
            "spec": spec,
            "status": {
                "phase": phase,
                "podIP": ips[0],
                "podIPs": [{"ip": i} for i in ips],
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }
    )


def endpoint_slice(
    name, service_name, addresses, ns="default", ports=(("http", 8080),), address_type="IPv4", ready=True, hostnames=None,
    pods=None,
):
    """``addresses``: one endpoint per item; an item may be a list (a dual-stack endpoint). ``pods``: address → pod name."""
    hostnames, pods = hostnames or {}, pods or {}
    return read_object(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": address_type,
            "endpoints": [_endpoint(a, ready, hostnames, pods, ns) for a in addresses],
            "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
        }
    )


def _endpoint(address, ready, hostnames, pods, ns):
    addresses = [address] if isinstance(address, str) else list(address)
    first = addresses[0]
    return {
        "addresses": addresses,
        "conditions": {"ready": ready},
        **({"hostname": hostnames[first]} if first in hostnames else {}),
        **({"targetRef": {"kind": "Pod", "name": pods[first], "namespace": ns}} if first in pods else {}),
    }


def namespace(name):
    return read_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
