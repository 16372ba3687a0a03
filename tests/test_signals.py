"""Signals to a real ``clusterdns serve`` process: SIGHUP and SIGUSR1 reload, SIGUSR2 logs the state,
none of them ends the process; SIGTERM still drains and exits 0."""

from __future__ import annotations

import signal

import dns.message
import dns.query

from .test_cli import Serve


def web(ip: str) -> str:
    return f"apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{clusterIP: {ip}}}\n"


def ask(serve: Serve, name: str = "web.default.svc.cluster.local") -> list[str]:
    reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=serve.port, timeout=3)
    return sorted(rd.to_text() for rrset in reply.answer for rd in rrset)


def test_reload_and_state_signals_keep_the_server_running(tmp_path):
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "web.yaml").write_text(web("10.96.0.5"))
    serve = Serve("--manifests", str(zones), http="")
    try:
        assert ask(serve) == ["10.96.0.5"]
        for sig in (signal.SIGHUP, signal.SIGUSR1):
            seen = len(serve.lines)
            serve.proc.send_signal(sig)
            serve.wait_for_log(rf"{sig.name}: reloading", start=seen)
            serve.wait_for_log(r"reloaded .*web\.yaml", start=seen)  # every file re-read, changed or not
            assert serve.proc.poll() is None
            assert ask(serve) == ["10.96.0.5"]

        seen = len(serve.lines)
        serve.proc.send_signal(signal.SIGUSR2)
        line = serve.wait_for_log(r"SIGUSR2: state: ", start=seen)
        assert "ready;" in line and "1 Services" in line and "manifests: 1 files, 0 errors" in line
        assert serve.proc.poll() is None and ask(serve) == ["10.96.0.5"]
    finally:
        assert serve.stop(signal.SIGTERM) == 0
    assert "Traceback" not in serve.text
    assert "shutting down" in serve.text
