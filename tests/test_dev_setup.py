"""``clusterdns dev setup``: the files and commands for each OS, and apply/undo in a fake root.

The fake root holds the files each OS reads (resolv.conf, NetworkManager's
configuration, an existing /etc/resolver entry); apply then undo must leave
every byte, mode and directory as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clusterdns.dev import setup
from clusterdns.dev.upstreams import captured_upstreams, dev_upstreams
from clusterdns.forward.resolvconf import nameservers

from .conftest import ROOT

CLI = [sys.executable, "-m", "clusterdns.cli", "dev", "setup"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, env=ENV)


def snapshot(root: Path) -> dict[str, tuple[str, bytes | None, int]]:
    """Every path under ``root``: kind, bytes (files), mode."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[path.relative_to(root).as_posix()] = ("dir" if path.is_dir() else "file",
                                                  None if path.is_dir() else path.read_bytes(), st.st_mode)
    return out


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/NetworkManager/conf.d").mkdir(parents=True)
    (root / "etc/NetworkManager/NetworkManager.conf").write_text("[main]\nplugins=ifupdown,keyfile\n")
    (root / "etc/resolv.conf").write_text("# from DHCP\nnameserver 127.0.0.1\nnameserver 127.0.0.2\nsearch lan\n")
    (root / "etc/resolver").mkdir()
    (root / "etc/resolver/cluster.local").write_text("nameserver 127.9.9.9\n")  # someone else's, to be restored
    os.chmod(root / "etc/resolver/cluster.local", 0o600)
    (root / "etc/systemd").mkdir()
    return root


def test_resolved_plan_is_a_dummy_link_with_routing_only_domains():
    p = setup.plan("systemd-resolved", ["cluster.local", "k8s"], ("127.0.0.1", 1053))
    network = next(f for f in p.files if f.path.endswith(".network")).content
    assert "DNS=127.0.0.1:1053\n" in network
    assert "Domains=~cluster.local ~k8s\n" in network
    assert "DNSDefaultRoute=no\n" in network  # never takes over "."
    netdev = next(f for f in p.files if f.path.endswith(".netdev")).content
    assert "Kind=dummy" in netdev and "Name=clusterdns0" in netdev
    assert "networkctl reload" in p.commands
    assert "ip link delete clusterdns0" in p.undo_commands


def test_macos_plan_writes_resolver_files_and_lo0_aliases():
    p = setup.plan("macos", ["cluster.local.", "k8s"], ("127.0.0.1", 1053), ["127.10.20.30", "127.10.20.30"])
    assert {f.path: f.content.splitlines()[1:] for f in p.files} == {
        "/etc/resolver/cluster.local": ["nameserver 127.0.0.1", "port 1053"],
        "/etc/resolver/k8s": ["nameserver 127.0.0.1", "port 1053"],
    }
    assert p.commands == ("ifconfig lo0 alias 127.10.20.30 up",)
    assert p.undo_commands == ("ifconfig lo0 -alias 127.10.20.30",)
    assert any("dscacheutil" in note for note in p.notes)


def test_windows_plan_is_powershell_and_says_nrpt_has_no_port():
    p = setup.plan("windows", ["cluster.local", "k8s"], ("127.0.0.1", 1053))
    assert 'Add-DnsClientNrptRule -Namespace ".cluster.local" -NameServers "127.0.0.1" -Comment "clusterdns"' in p.commands
    assert 'Add-DnsClientNrptRule -Namespace ".k8s" -NameServers "127.0.0.1" -Comment "clusterdns"' in p.commands
    assert not p.files and not p.applicable
    assert any("cannot name a port" in note and "--listen 127.0.0.1:53" in note for note in p.notes)
    with pytest.raises(setup.SetupError, match="nothing is applied"):
        setup.apply(p, Path("/nonexistent"), setup.Runner(execute=False))


def test_networkmanager_plan_adds_dnsmasq_servers_and_turns_the_plugin_on_only_if_off(fake_root: Path):
    p = setup.plan("networkmanager", ["cluster.local", "k8s"], ("127.0.0.1", 1053), root=fake_root)
    files = {f.path: f.content for f in p.files}
    servers = files["/etc/NetworkManager/dnsmasq.d/clusterdns.conf"]
    assert "server=/cluster.local/127.0.0.1#1053\nserver=/k8s/127.0.0.1#1053\n" in servers
    assert "dns=dnsmasq" in files["/etc/NetworkManager/conf.d/clusterdns.conf"]
    (fake_root / "etc/NetworkManager/conf.d/dns.conf").write_text("[main]\ndns=dnsmasq\n")
    p = setup.plan("networkmanager", ["cluster.local", "k8s"], ("127.0.0.1", 1053), root=fake_root)
    assert [f.path for f in p.files] == ["/etc/NetworkManager/dnsmasq.d/clusterdns.conf"]
    assert setup.detect_os(fake_root) == "networkmanager"  # (on Linux: the platform decides first)


@pytest.mark.parametrize("os_name", ["systemd-resolved", "macos", "networkmanager"])
def test_apply_then_undo_leaves_the_root_byte_for_byte_as_before(fake_root: Path, os_name: str):
    before = snapshot(fake_root)
    p = setup.plan(os_name, ["cluster.local", "k8s"], ("127.0.0.1", 1053), ["127.1.2.3"], root=fake_root)
    run = setup.Runner(execute=False)
    record = setup.apply(p, fake_root, run)
    for change in p.files:
        assert setup.under(fake_root, change.path).read_text() == change.content
    assert run.ran == list(p.commands)
    stored = json.loads(setup.state_path(fake_root).read_text())
    assert stored["files"] == record["files"] and stored["os"] == os_name
    assert stored["upstreams"] == ["127.0.0.1:53", "127.0.0.2:53"]  # captured before the change
    with pytest.raises(setup.SetupError, match="already applied"):
        setup.apply(p, fake_root, run)
    setup.undo(fake_root, run)
    assert snapshot(fake_root) == before
    assert run.ran[-len(p.undo_commands) or len(run.ran):] == list(p.undo_commands)
    with pytest.raises(setup.SetupError, match="nothing to undo"):
        setup.undo(fake_root, run)


def test_cli_apply_and_undo_in_a_fake_root(fake_root: Path):
    before = snapshot(fake_root)
    applied = cli("--apply", "--os", "macos", "--root", str(fake_root), "--forward-address", "127.4.5.6")
    assert applied.returncode == 0, applied.stderr
    assert "replaced /etc/resolver/cluster.local" in applied.stdout
    assert "created /etc/resolver/k8s" in applied.stdout
    assert "not run (--root): ifconfig lo0 alias 127.4.5.6 up" in applied.stdout
    assert (fake_root / "etc/resolver/cluster.local").read_text().endswith("nameserver 127.0.0.1\nport 1053\n")
    undone = cli("--undo", "--root", str(fake_root))
    assert undone.returncode == 0, undone.stderr
    assert "restored /etc/resolver/cluster.local" in undone.stdout and "removed /etc/resolver/k8s" in undone.stdout
    assert snapshot(fake_root) == before
    again = cli("--undo", "--root", str(fake_root))
    assert again.returncode == 1 and "nothing to undo" in again.stderr


def test_cli_print_shows_every_change_and_refuses_the_mdns_port():
    printed = cli("--print", "--os", "systemd-resolved", "--listen", "127.0.0.1:28053")
    assert printed.returncode == 0
    assert "## write /etc/systemd/network/80-clusterdns0.network" in printed.stdout
    assert "DNS=127.0.0.1:28053" in printed.stdout
    refused = cli("--print", "--listen", "127.0.0.1:5353")
    assert refused.returncode == 2 and "mDNS" in refused.stderr
    windows = cli("--apply", "--os", "windows", "--root", "/tmp")
    assert windows.returncode == 1 and "nothing is applied" in windows.stderr


def test_upstreams_never_point_back_at_us(tmp_path: Path):
    assert nameservers("nameserver 10.0.0.2 # x\nnameserver fe80::1%eth0\nnameserver bogus\n") == ["10.0.0.2", "fe80::1%eth0"]
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/resolv.conf").write_text("nameserver 127.0.0.1\nnameserver 127.0.0.3\n")
    # Listening on 127.0.0.1:53 (Windows-style), the first entry is us: dropped.
    assert captured_upstreams(tmp_path, ("127.0.0.1", 53)) == ["127.0.0.3:53"]
    assert captured_upstreams(tmp_path, ("127.0.0.1", 1053)) == ["127.0.0.1:53", "127.0.0.3:53"]
    state = tmp_path / "setup.json"
    resolv = tmp_path / "etc/resolv.conf"
    assert dev_upstreams(["127.0.0.7:53"], state, resolv, ("127.0.0.1", 53)) == (["127.0.0.7:53"], "--upstream")
    assert dev_upstreams(None, state, resolv, ("0.0.0.0", 53)) == ([], str(resolv))  # all loopback: all us
    state.write_text(json.dumps({"upstreams": ["127.0.0.8:53"]}))
    assert dev_upstreams(None, state, resolv, ("127.0.0.1", 53))[0] == ["127.0.0.8:53"]
