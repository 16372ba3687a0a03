"""The command line: check's summary and exit codes, and serve as a real process."""

import os
import re
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
    assert run("serve", "--listen", "nonsense").returncode == 2
    assert run("check", "--manifests", "/no/such/dir").returncode == 2
    assert run("serve", "--help").returncode == 0


class Serve:
    """``clusterdns serve`` as a process, its stderr collected; ports 0 are read back from its log.

    Ports are chosen by the server itself (``127.0.0.1:0``), never picked here first: a port found
    free for UDP in the test may be taken for TCP (the HTTP port, the DNS port's TCP twin) by the
    time the server binds it, and the run fails for no fault of the server.
    """

    def __init__(self, *args: str, listen: str = "127.0.0.1:0", http: str | None = "127.0.0.1:0"):
        argv = [*CLI, "serve", *args]
        if "--upstream" not in args and "--corefile" not in args:
            argv.append("--no-forward")  # never the machine's resolv.conf: tests talk to 127.0.0.1 only
        if listen:
            argv += ["--listen", listen]
        if http is not None:
            argv += ["--http", http]
        self.proc = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True, env=ENV)
        self.lines: list[str] = []
        self._logged = threading.Condition()
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                with self._logged:
                    self.lines.append(line)
                    self._logged.notify_all()
                if "serving zone" in line or "cannot listen" in line and "ERROR" in line:
                    ready.set()
            with self._logged:
                self._logged.notify_all()
            ready.set()

        self.reader = threading.Thread(target=read, name="test-serve-stderr", daemon=True)
        self.reader.start()
        assert ready.wait(30), "server did not start"
        self.port = self._port(r"listening on \S+ port (\d+)")
        self.http = self._port(r"metrics on http://[^:]+:(\d+)/")

    def _port(self, pattern: str) -> int | None:
        found = [re.search(pattern, line) for line in self.lines]
        return next((int(m.group(1)) for m in found if m), None)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for_log(self, pattern: str, start: int = 0, timeout: float = 10) -> str:
        """The first log line from ``start`` on matching ``pattern`` (a regex), awaited; bounded."""
        deadline = time.monotonic() + timeout
        with self._logged:
            while True:
                found = next((line for line in self.lines[start:] if re.search(pattern, line)), None)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                assert remaining > 0 and self.proc.poll() is None, f"no log line like {pattern!r}:\n{self.text}"
                self._logged.wait(remaining)

    def exit_status(self, timeout: float = 15) -> int:
        """The status of a server expected to exit by itself (no signal: one sent while it is
        already on its way out would turn its own exit status into -SIGTERM)."""
        return self.stop(sig=None, timeout=timeout)

    def stop(self, sig: signal.Signals | None = signal.SIGTERM, timeout: float = 15) -> int:
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            self.reader.join(5)


def test_serve_answers_and_stops_cleanly_on_sigterm():
    serve = Serve("--manifests", str(ZONES), http="")
    port = serve.port
    try:
        q = dns.message.make_query("kubernetes.default.svc.cluster.local", "A")
        reply = dns.query.udp(q, "127.0.0.1", port=port, timeout=3)
        assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["10.96.0.1"]
        reply = dns.query.tcp(q, "127.0.0.1", port=port, timeout=3)
        assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["10.96.0.1"]
    finally:
        assert serve.stop() == 0
    assert "loaded" in serve.text


def test_serve_exits_3_naming_the_port_and_the_flag_when_the_dns_port_is_taken():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        serve = Serve("--manifests", str(ZONES), listen=f"127.0.0.1:{port}", http="")
        assert serve.exit_status() == 3
    assert (
        f"cannot listen for DNS on 127.0.0.1 port {port}: Address already in use "
        "(another program is using it; choose another with --listen HOST:PORT)"
    ) in serve.text


def test_serve_exits_3_naming_the_flag_when_an_explicit_http_port_is_taken():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        serve = Serve("--manifests", str(ZONES), http=f"127.0.0.1:{port}")
        assert serve.exit_status() == 3
    assert (
        f"cannot listen for HTTP on 127.0.0.1 port {port}: Address already in use (another program is using it; "
        "choose another with --http HOST:PORT, or turn HTTP off with --http '')"
    ) in serve.text


def test_sigterm_with_tcp_clients_connected_logs_no_traceback():
    serve = Serve("--manifests", str(ZONES), http="")
    clients = [socket.create_connection(("127.0.0.1", serve.port), timeout=3) for _ in range(5)]
    try:
        q = dns.message.make_query("kubernetes.default.svc.cluster.local", "A")
        dns.query.send_tcp(clients[0], q)  # one has been answered, the rest have said nothing
        assert dns.query.receive_tcp(clients[0], expiration=time.time() + 3)[0].answer
        assert serve.stop() == 0
        for client in clients:
            assert client.recv(1) == b""  # closed by the server
    finally:
        for client in clients:
            client.close()
    assert "Traceback" not in serve.text and "ERROR" not in serve.text, serve.text


def http_get(port, path):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_lameduck_keeps_answering_while_not_ready():
    serve = Serve("--manifests", str(ZONES), "--lameduck", "30")
    port, http, proc = serve.port, serve.http, serve.proc
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
        serve.stop(signal.SIGKILL, timeout=5)


REJECTED = """\
apiVersion: v1
kind: Sevice
metadata: {name: typo}
spec: {clusterIP: 10.96.0.9}
---
apiVersion: v1
kind: Service
metadata: {name: Upper}
spec: {clusterIP: 10.96.0.10}
---
apiVersion: v1
kind: Namespace
metadata: {name: Bad_NS}
---
apiVersion: v1
kind: Service
metadata: {name: edited}
spec: {clusterIP: 10.96.0.12, clusterIPs: [10.96.0.13]}
"""


def test_check_rejects_what_kubernetes_rejects(tmp_path):
    (tmp_path / "bad.yaml").write_text(REJECTED)
    result = run("check", "--manifests", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "4 error(s)" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    for expected in (
        'bad.yaml: document 1 (Sevice typo): kind: "Sevice" is not a kind of v1 (did you mean Service?)',
        'bad.yaml: document 2 (Service default/Upper): metadata.name: expected an RFC 1035 label',
        'bad.yaml: document 3 (Namespace Bad_NS): metadata.name: expected an RFC 1123 label',
        'bad.yaml: document 4 (Service default/edited): spec.clusterIP: "10.96.0.12" disagrees with spec.clusterIPs[0]',
    ):
        assert any(expected in line for line in errors), (expected, errors)


def test_records_prints_exactly_what_serve_answers(tmp_path):
    """Every record `records` prints is answered, as printed, by a server fed the same manifests."""
    from .dnsserver import RunningServer

    (tmp_path / "extra.yaml").write_text(REJECTED)
    result = run("records", "--manifests", str(ZONES), str(tmp_path))
    assert result.returncode == 1  # the rejected objects are errors...
    printed = [line.split() for line in result.stdout.splitlines()]
    with RunningServer([ZONES, tmp_path]) as server:
        for owner, _ttl, _class, rtype, *rdata in printed:
            reply = server.query(owner, rtype, tcp=True)
            got = {line.split(None, 4)[4] for rrset in reply.answer for line in rrset.to_text().splitlines()
                   if line.split()[0] == owner}
            assert " ".join(rdata) in got, (owner, rtype, rdata, got)
        assert len(printed) > 50


def test_http_is_required_only_when_given():
    from clusterdns.cli import build_parser, serve_options, settings_from

    parser = build_parser()
    for argv, http, required in (
        ([], ("127.0.0.1", 8080), False),
        (["--http", "127.0.0.1:8080"], ("127.0.0.1", 8080), True),
        (["--http", ""], None, True),
    ):
        args = parser.parse_args(["serve", "--manifests", str(ZONES), "--no-forward", *argv])  # not this machine's resolv.conf
        options = serve_options(args, settings_from(args), parser)
        assert (options.http, options.http_required) == (http, required)


def test_sigusr1_reloads_the_corefile_on_the_same_port(tmp_path):
    corefile = tmp_path / "Corefile"
    corefile.write_text(".:53 {\n    kubernetes cluster.local {\n        ttl 5\n    }\n    ready\n}\n")
    serve = Serve("--corefile", str(corefile), "--manifests", str(ZONES), "--relocate", "*=127.0.0.1:0", listen="", http=None)
    q = dns.message.make_query("kubernetes.default.svc.cluster.local", "A")
    try:
        assert dns.query.udp(q, "127.0.0.1", port=serve.port, timeout=3).answer[0].ttl == 5
        corefile.write_text(".:53 {\n    kubernetes cluster.local {\n        ttl 9\n    }\n    ready\n}\n")
        serve.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 15
        while "reload: applied" not in serve.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "reload: applied" in serve.text
        assert dns.query.udp(q, "127.0.0.1", port=serve.port, timeout=3).answer[0].ttl == 9
    finally:
        assert serve.stop() == 0
