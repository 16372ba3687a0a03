"""The zone as JSON, for ``GET /zone``: what kube-dns's ``/cache`` showed, and more.

Names with their records, and for each Service its endpoints as DNS sees
them (ready, serving, terminating, hostname, the name DNS gives it, the slice
it came from).  Built on request, on the event loop, from the current state:
a debugging view, not a hot path.
"""

from __future__ import annotations

from dnslib import QTYPE

from .app import ClusterDNS
from .objects import SERVICE, Service
from .records import endpoint_label, service_name
from .zone import to_rdata


def zone_json(dns: ClusterDNS) -> dict:
    zone, settings = dns.zone, dns.settings
    names = {}
    for name in zone.names():
        sets = zone.records(name) or {}
        names[name] = {QTYPE.get(t): sorted(str(to_rdata(t, rd)) for rd in rds) for t, rds in sets.items() if rds}
    services = []
    for key in sorted(k for k in dns.cluster.objects if k[0] == SERVICE):
        service = dns.cluster.objects[key]
        assert isinstance(service, Service)  # the key's kind is SERVICE
        ref = (service.namespace, service.name)
        if not dns.cluster.visible(service.namespace):
            continue
        owner = service_name(service, settings)
        endpoints = []
        for slice_ in dns.cluster.endpoint_slices(ref):
            for endpoint in slice_.endpoints:
                endpoints.append(
                    {
                        "addresses": list(endpoint.addresses),
                        "ready": endpoint.ready,
                        "serving": endpoint.serving,
                        "terminating": endpoint.terminating,
                        "hostname": endpoint.hostname or None,
                        "node": endpoint.node_name or None,
                        "pod": endpoint.target_pod or None,
                        "slice": slice_.name,
                        # the name DNS gives a ready endpoint (not-ready ones have none)
                        "dns_name": f"{endpoint_label(endpoint, settings)}.{owner}"
                        if endpoint.ready and slice_.address_type != "FQDN"
                        else None,
                    }
                )
        services.append(
            {
                "namespace": service.namespace,
                "name": service.name,
                "type": "headless" if service.headless else service.type,
                "cluster_ips": list(service.cluster_ips),
                "external_name": service.external_name or None,
                "dns_name": owner,
                "endpoints": endpoints,
            }
        )
    return {
        "zones": list(settings.zones),
        "serial": zone.serial,
        "complete": zone.complete,
        "names": names,
        "services": services,
    }
