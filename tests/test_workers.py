"""serve --workers: several processes on one port (SO_REUSEPORT), stopped with the first one."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import pytest

from .conftest import ROOT, ZONES

CLI = [sys.executable, "-m", "clusterdns.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def free_port() -> int:
    """A loopback port free for UDP and TCP (workers need a fixed port: port 0 differs per process)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port")


def workers_of(pid: int) -> list[int]:
    """The worker processes started by ``pid`` (its children running clusterdns with --reuse-port)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"--reuse-port" in cmdline:
            found.append(int(entry.name))
    return found


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def answered(port: int) -> bool:
    query = dns.message.make_query("kubia.default.svc.cluster.local", "A")
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
    except (dns.exception.Timeout, OSError):
        return False
    return [rd.to_text() for rrset in reply.answer for rd in rrset] == ["10.96.100.10"]


@pytest.fixture
def serve():
    procs = []

    def start(*args):
        port = free_port()
        argv = [*CLI, "serve", "--manifests", str(ZONES), "--listen", f"127.0.0.1:{port}", "--http", "",
                "--no-forward", "--log-level", "warning", *args]
        proc = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True, env=ENV)
        procs.append(proc)
        return proc, port

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stderr.close()


def test_two_workers_share_the_port_and_stop_with_the_first(serve):
    proc, port = serve("--workers", "2")
    (worker,) = wait_for(lambda: workers_of(proc.pid), what="the second worker")
    # both bound the port: the kernel lists two UDP sockets on it
    wait_for(lambda: _udp_sockets_on(port) == 2, what="two UDP sockets on the port")
    assert all(answered(port) for _ in range(20))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    wait_for(lambda: gone(worker), what="the worker to stop")


def test_a_worker_dies_with_a_killed_first_process(serve):
    proc, port = serve("--workers", "2")
    (worker,) = wait_for(lambda: workers_of(proc.pid), what="the second worker")
    wait_for(lambda: answered(port), what="answers")
    proc.kill()
    proc.wait(10)
    wait_for(lambda: gone(worker), what="the orphaned worker to get its parent-death signal")


def test_workers_need_a_fixed_port():
    result = subprocess.run([*CLI, "serve", "--manifests", str(ZONES), "--listen", "127.0.0.1:0", "--workers", "2"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, env=ENV)
    assert result.returncode == 2
    assert "--workers needs fixed ports" in result.stderr


def _udp_sockets_on(port: int) -> int:
    wanted = f"0100007F:{port:04X}"
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1] == wanted)


# ---------------------------------------------------------------- deploy/


def _docs(path: Path) -> list[dict]:
    import yaml

    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_the_deployment_sets_workers_from_its_cpu():
    (deployment,) = [d for d in _docs(ROOT / "deploy" / "20-deployment.yaml") if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    ref = env["CLUSTERDNS_WORKERS"]["valueFrom"]["resourceFieldRef"]
    assert ref == {"containerName": container["name"], "resource": "requests.cpu", "divisor": "1"}
    assert container["resources"]["requests"]["cpu"] == "100m"  # rounds up to one worker


def test_workers_come_from_the_environment(monkeypatch):
    import argparse

    from clusterdns.cli import _workers

    parser = argparse.ArgumentParser()
    monkeypatch.setenv("CLUSTERDNS_WORKERS", "3")
    assert _workers(None, parser) == 3
    assert _workers(2, parser) == 2  # the flag wins
    monkeypatch.delenv("CLUSTERDNS_WORKERS")
    assert _workers(None, parser) == 1
    monkeypatch.setenv("CLUSTERDNS_WORKERS", "two")
    with pytest.raises(SystemExit):
        _workers(None, parser)


def test_the_autoscaler_scales_the_clusterdns_deployment_linearly():
    import json

    docs = {d["kind"]: d for d in _docs(ROOT / "deploy" / "autoscaler" / "cluster-proportional-autoscaler.yaml")}
    assert set(docs) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment"}
    linear = json.loads(docs["ConfigMap"]["data"]["linear"])
    assert linear["coresPerReplica"] == 256 and linear["nodesPerReplica"] == 16 and linear["preventSinglePointFailure"]
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    args = dict(a.split("=", 1) for a in container["args"])
    assert args["--target"] == "Deployment/clusterdns" and args["--namespace"] == "kube-system"
    assert args["--configmap"] == docs["ConfigMap"]["metadata"]["name"]
    assert json.loads(args["--default-params"]) == {"linear": linear}
    assert docs["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
    scale = [r for r in docs["ClusterRole"]["rules"] if "deployments/scale" in r["resources"]]
    assert scale and set(scale[0]["verbs"]) == {"get", "update"}
