"""``clusterdns serve`` as a real process with forwarding: the loop probe, the options, resolv.conf."""

from __future__ import annotations

import socket

import dns.message
import dns.query
import dns.rcode
import pytest

from clusterdns.forward.resolvconf import ResolvConfError, nameservers, upstreams_from_file

from .conftest import ZONES
from .test_cli import Serve, run
from .upstreams import FakeUpstream, dead_address

EXIT_BIND, EXIT_LOOP = 3, 4


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exit_status(serve: Serve, timeout: float = 15) -> int:
    """Wait for serve to exit by itself (bounded); kill it if it does not."""
    try:
        return serve.proc.wait(timeout)
    finally:
        serve.stop()


def test_a_forwarding_loop_through_the_upstream_is_detected_at_start():
    # The upstream holds its replies until it knows serve's port (chosen by serve), then relays back to it.
    with FakeUpstream(hold=True) as looping:
        serve = Serve("--manifests", str(ZONES), "--upstream", looping.address, http="")
        looping.relay_to = ("127.0.0.1", serve.port)
        looping.release()
        status = exit_status(serve)
        probes = [name for name, qtype, _ in looping.asked if qtype == "HINFO"]
    assert status == EXIT_LOOP
    message = next(line for line in serve.lines if "forwarding loop detected" in line)
    assert f"upstream {looping.address}" in message and "HINFO" in message and "--upstream" in message
    assert len(probes) == 1  # one probe, answered SERVFAIL when it came back: no spinning


def test_forwarding_to_ourselves_is_detected_at_start():
    for _ in range(3):  # our own port must be named before serve starts: retry if it was taken meanwhile
        port = free_port()
        serve = Serve("--manifests", str(ZONES), "--upstream", f"127.0.0.1:{port}", listen=f"127.0.0.1:{port}", http="")
        status = exit_status(serve)
        if status != EXIT_BIND:
            break
    assert status == EXIT_LOOP
    assert f"forwarding loop detected: upstream 127.0.0.1:{port}" in serve.text


def test_serve_forwards_outside_names_and_sends_one_loop_probe():
    with FakeUpstream() as upstream:
        serve = Serve("--manifests", str(ZONES), "--upstream", upstream.address, http="")
        try:
            reply = dns.query.udp(dns.message.make_query("example.com", "A"), "127.0.0.1", port=serve.port, timeout=3)
            assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["192.0.2.10"]
        finally:
            assert serve.stop() == 0
        assert upstream.count(qtype="HINFO") == 1  # the loop probe, which came back NXDOMAIN: no loop
    assert f"forwarding the rest to {upstream.address}" in serve.text
    assert "did not answer the start-up probe" not in serve.text


def test_an_upstream_that_does_not_answer_the_start_up_probe_is_named_and_cluster_names_still_answer():
    dead = "%s:%d" % dead_address()
    serve = Serve("--manifests", str(ZONES), "--upstream", dead, http="")
    try:
        warning = serve.wait_for_log("did not answer the start-up probe")
        reply = dns.query.udp(dns.message.make_query("kubia.default.svc.cluster.local", "A"), "127.0.0.1",
                              port=serve.port, timeout=3)
        assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["10.96.100.10"]
    finally:
        assert serve.stop() == 0  # not a loop: it keeps serving
    assert f"upstream {dead} (for .)" in warning and "Connection refused" in warning and "--upstream" in warning


@pytest.mark.parametrize(
    "args, message",
    [
        (["--no-forward", "--upstream", "127.0.0.1"], "--no-forward excludes --upstream and --stub"),
        (["--upstream", "dns.example.com"], "expected an IP address"),
        (["--upstream", "127.0.0.1:99999"], "the port must be 1-65535"),
        (["--stub", "cluster.local=127.0.0.1"], "overlaps the cluster zone cluster.local."),
        (["--stub", "corp.example"], "expected ZONE=ADDR[,ADDR...]"),
        (["--upstream", "127.0.0.1", "--serve-stale", "soon"], "expected a duration"),
        (["--upstream", "127.0.0.1", "--max-concurrent", "0"], "--max-concurrent 0: expected 1 or more"),
        (["--upstream", "/no/such/resolv.conf"], "cannot read it"),
    ],
)
def test_bad_forwarding_options_exit_2_with_the_reason(args, message):
    result = run("serve", "--manifests", str(ZONES), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_resolv_conf_is_read_as_glibc_reads_it():
    text = """# a comment
; another
search default.svc.cluster.local
nameserver 192.0.2.1   # trailing words are ignored
nameserver\tfe80::1%eth0
 nameserver 192.0.2.9
nameserver not-an-address
nameserver 2001:db8::53
nameserver 192.0.2.4
"""
    assert nameservers(text) == ["192.0.2.1", "fe80::1%eth0", "2001:db8::53"]  # at most 3; indented line skipped


def test_a_loopback_stub_is_replaced_by_systemd_resolveds_file(tmp_path):
    stub = tmp_path / "resolv.conf"
    stub.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\n")
    full = tmp_path / "systemd-resolv.conf"
    full.write_text("nameserver 192.0.2.53\nnameserver 2001:db8::53\n")
    assert upstreams_from_file(stub, systemd_file=full) == (("192.0.2.53", 53), ("2001:db8::53", 53))
    with pytest.raises(ResolvConfError, match=r"127\.0\.0\.53 is a loopback stub .* does not exist\. Pass"):
        upstreams_from_file(stub, systemd_file=tmp_path / "missing")
    empty = tmp_path / "empty.conf"
    empty.write_text("search example.com\n")
    with pytest.raises(ResolvConfError, match="no nameserver lines"):
        upstreams_from_file(empty)


def test_a_forwarding_loop_is_detected_with_several_workers_on_one_port():
    # The probe may come back to the other worker (SO_REUSEPORT): every worker of the launch knows every probe.
    for _ in range(3):
        port = free_port()
        with FakeUpstream(relay_to=("127.0.0.1", port)) as looping:
            serve = Serve("--manifests", str(ZONES), "--upstream", looping.address, "--workers", "2",
                          listen=f"127.0.0.1:{port}", http="")
            status = exit_status(serve)
            probes = [name for name, qtype, _ in looping.asked if qtype == "HINFO"]
        if status != EXIT_BIND:
            break
    assert status == EXIT_LOOP
    assert "forwarding loop detected" in serve.text
    assert len(probes) <= 4  # each worker's one probe, plus at most a hop each: no spinning
