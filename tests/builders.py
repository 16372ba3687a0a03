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


def pod(name, ip, ns="default", labels=None, ready=True, hostname=None, subdomain=None, ports=(), phase="Running"):
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
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": spec,
            "status": {
                "phase": phase,
                "podIP": ips[0],
                "podIPs": [{"ip": i} for i in ips],
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }
    )


def endpoint_slice(name, service_name, addresses, ns="default", ports=(("http", 8080),), address_type="IPv4", ready=True, hostnames=None):
    hostnames = hostnames or {}
    return read_object(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": address_type,
            "endpoints": [
                {"addresses": [a], "conditions": {"ready": ready}, **({"hostname": hostnames[a]} if a in hostnames else {})}
                for a in addresses
            ],
            "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
        }
    )


def namespace(name):
    return read_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
