"""GET /zone on a running `serve`: the zone as JSON, over real HTTP."""

from __future__ import annotations

import asyncio
import http.client
import json

from clusterdns.serving import ServeOptions, Serving
from tests.conftest import ZONES


def _get(port: int, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("content-type"), resp.read()
    finally:
        conn.close()


async def test_zone_json_has_names_records_and_endpoints_as_dns_sees_them():
    serving = Serving(ServeOptions(manifests=[str(ZONES)], listen=[("127.0.0.1", 0)], http=("127.0.0.1", 0)))
    await serving.start()
    try:
        status, content_type, body = await asyncio.to_thread(_get, serving.http.port, "/zone")
    finally:
        await serving.close()
    assert status == 200 and content_type == "application/json"
    view = json.loads(body)
    assert view["names"]["kubia.default.svc.cluster.local."]["A"] == ["10.96.100.10"]
    kubia = next(s for s in view["services"] if s["name"] == "kubia")
    by_ip = {e["addresses"][0]: e for e in kubia["endpoints"]}
    assert by_ip["10.244.2.12"]["ready"] is False and by_ip["10.244.2.12"]["serving"] is False
    assert by_ip["10.244.2.12"]["dns_name"] is None
    assert by_ip["10.244.1.10"] | {"slice": None} == {
        "addresses": ["10.244.1.10"], "ready": True, "serving": True, "terminating": False, "hostname": None,
        "node": "kind-worker", "pod": "kubia-7d9b4", "slice": None,
        "dns_name": "10-244-1-10.kubia.default.svc.cluster.local.",
    }
    assert by_ip["10.244.1.10"]["slice"].startswith("kubia-")
    subdomain = next(s for s in view["services"] if s["name"] == "default-subdomain")
    assert {e["hostname"] for e in subdomain["endpoints"]} == {"busybox-1", "busybox-2"}
    assert subdomain["type"] == "headless"
