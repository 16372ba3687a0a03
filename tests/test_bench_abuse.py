"""bench/abuse.py, the hostile-client load a soak drives, against a real server with small limits."""

from __future__ import annotations

import asyncio
import importlib.util
import sys

import pytest

from clusterdns.http import start_http
from clusterdns.metrics import Metrics
from clusterdns.server import TcpLimits

from .conftest import ROOT, ZONES
from .dnsserver import RunningServer

spec = importlib.util.spec_from_file_location("abuse", ROOT / "bench" / "abuse.py")
abuse = importlib.util.module_from_spec(spec)
sys.modules["abuse"] = abuse  # dataclasses look their module up there
spec.loader.exec_module(abuse)


@pytest.fixture(scope="module")
def server():
    with RunningServer([ZONES], tcp_limits=TcpLimits(max_connections=10)) as srv:
        yield srv


@pytest.mark.parametrize("scenario, options", [
    ("bad-names", {"scale": 0.05}),
    ("amplification", {"scale": 0.05}),
    ("tcp-hold", {"connections": 30, "never_reading": 4}),  # three times the limit of 10
])
def test_dns_scenarios_pass_against_the_server(server, scenario, options):
    row = abuse.run(scenario, server.host, server.port, **options)
    assert row.ok, row.line()
    assert row.answered == 20 and row.lost == 0


async def test_http_slowloris_scenario_passes(server):
    http = await start_http("127.0.0.1", 0, Metrics(process_metrics=False), lambda: (True, ""), max_connections=8)
    try:
        row = await asyncio.to_thread(abuse.run, "http-slowloris", "127.0.0.1", 0, http_port=http.port, connections=12)
    finally:
        await http.close()
    assert row.ok and row.answered == 20, row.line()
