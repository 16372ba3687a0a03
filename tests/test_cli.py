"""The command line: check's summary and exit codes, and serve as a real process."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import dns.message
import dns.query

from .conftest import ROOT, ZONES

CLI = [sys.executable, "-m", "clusterdns.cli"]


ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # the checkout's code, installed or not


def run(*args, cwd=ROOT):
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=ENV)


def test_check_zones_is_clean_and_summarises():
    result = run("check", "--manifests", str(ZONES))
    assert result.returncode == 0, result.stderr
    assert "0 error(s)" in result.stdout
    assert "Service" in result.stdout and "records:" in result.stdout


def test_check_reports_errors_with_exit_1(tmp_path):
    (tmp_path / "bad.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: http}]}\n")
    result = run("check", "--manifests", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert 'bad.yaml: document 1 (Service default/web): spec.ports[0].port: expected an integer 1-65535, got "http"' in result.stderr


def test_records_prints_zone_lines():
    result = run("records", "--manifests", str(ZONES))
    assert result.returncode == 0
    assert any(line.startswith("kubernetes.default.svc.cluster.local.") and "10.96.0.1" in line for line in result.stdout.splitlines())


def test_usage_errors_exit_2():
    assert run("serve", "--listen", "nonsense", "--no-forward").returncode == 2
    assert run("check", "--manifests", "/no/such/dir").returncode == 2
    assert run("serve", "--help").returncode == 0


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(*args):
    if "--upstream" not in args:
        args = (*args, "--no-forward")  # never the machine's resolv.conf: tests talk to 127.0.0.1 only
    proc = subprocess.Popen([*CLI, "serve", *args], cwd=ROOT, stderr=subprocess.PIPE, text=True, env=ENV)
    lines = []
    ready = threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if "serving zone" in line or "cannot listen" in line:
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, name="test-serve-stderr", daemon=True)
    reader.start()
    assert ready.wait(30), "server did not start"
    return proc, lines, reader


def test_serve_answers_and_stops_cleanly_on_sigterm():
    port = free_port()
    proc, lines, reader = start_serve("--manifests", str(ZONES), "--listen", f"127.0.0.1:{port}", "--http", "")
    try:
        q = dns.message.make_query("kubernetes.default.svc.cluster.local", "A")
        reply = dns.query.udp(q, "127.0.0.1", port=port, timeout=3)
        assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["10.96.0.1"]
        reply = dns.query.tcp(q, "127.0.0.1", port=port, timeout=3)
        assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["10.96.0.1"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        reader.join(5)
    assert any("loaded" in line for line in lines)


def test_serve_exits_3_when_the_port_is_taken():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        proc, lines, reader = start_serve("--manifests", str(ZONES), "--listen", f"127.0.0.1:{port}", "--http", "")
        assert proc.wait(15) == 3
        reader.join(5)
    assert any(f"cannot listen for DNS on 127.0.0.1 port {port}: Address already in use" in line for line in lines)


def http_get(port, path):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_lameduck_keeps_answering_while_not_ready():
    port, http = free_port(), free_port()
    proc, lines, reader = start_serve(
        "--manifests", str(ZONES), "--listen", f"127.0.0.1:{port}", "--http", f"127.0.0.1:{http}", "--lameduck", "30"
    )
    try:
        assert http_get(http, "/ready")[0] == 200
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while http_get(http, "/ready")[0] != 503:  # the signal is handled asynchronously
            assert time.monotonic() < deadline
        assert http_get(http, "/ready") == (503, "shutting down\n")
        q = dns.message.make_query("kubernetes.default.svc.cluster.local", "A")
        assert dns.query.udp(q, "127.0.0.1", port=port, timeout=3).answer  # still answering
        proc.send_signal(signal.SIGTERM)  # a second signal ends the 30 s lame duck at once
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        reader.join(5)
