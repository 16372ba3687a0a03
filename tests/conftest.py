from __future__ import annotations

import threading
from pathlib import Path

import pytest

from .dnsserver import RunningServer

pytest_plugins = ["tests.fake_apiserver"]  # its fixtures: fake_apiserver, kubeconfig

ROOT = Path(__file__).resolve().parent.parent
ZONES = ROOT / "zones"


@pytest.fixture(scope="module")
def zones_server():
    """The example cluster in zones/, served on a free port for a whole test module."""
    with RunningServer([ZONES]) as server:
        yield server


@pytest.fixture
async def started():
    """``await started(server)``: start a Serving (or DevServing) and return it; all are closed after the test."""
    running = []

    async def start(server):
        running.append(server)
        await server.start()
        return server

    yield start
    for server in running:
        await server.close()


@pytest.fixture
def serve_zones(started):
    """``await serve_zones(**options)``: a Serving of zones/ on 127.0.0.1 (free port, no HTTP); all closed after."""
    from clusterdns.serving import ServeOptions, Serving

    async def make(**options) -> Serving:
        return await started(Serving(ServeOptions(manifests=[str(ZONES)], listen=[("127.0.0.1", 0)], http=None,
                                                  **options)))

    return make


@pytest.fixture(autouse=True, scope="session")
def _no_leftover_threads():
    """Every thread a test starts must be stopped by the end of the session."""
    before = set(threading.enumerate())
    yield
    ours = ("test-", "clusterdns")
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive() and t.name.startswith(ours)]
    assert not leftover, f"threads left running: {leftover}"
