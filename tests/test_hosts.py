"""Hosts-file entries (``--hosts``): parsing, answers through real sockets, fallthrough, reload."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import dns.message
import dns.rcode
import dns.flags
import dns.rdatatype
import dns.reversename
import pytest

from clusterdns.cli import main
from clusterdns.hosts import Hosts, HostsSettings, parse_hosts
from clusterdns.serving import Serving
from tests.dnsserver import ask

ZONES = Path(__file__).resolve().parent.parent / "zones"
WAIT = 5.0

NODE_HOSTS = """\
# k3s NodeHosts, as the ConfigMap has it
172.18.0.2 server-0
172.18.0.3 agent-0 agent-0.local   # two names on one line
fd00::3    agent-0
192.168.49.1	host.minikube.internal
10.96.100.10 kubia.default.svc.cluster.local
"""


# --------------------------------------------------------------------------- parsing


def test_parse_names_addresses_comments_and_bad_lines():
    text = NODE_HOSTS + "not-an-ip somehost\n10.0.0.9\n10.0.0.8 bad..name\nfe80::1%eth0 linklocal\n"
    entries, errors = parse_hosts(text, "NodeHosts")
    assert [(e.address, e.name, e.line) for e in entries] == [
        ("172.18.0.2", "server-0.", 2),
        ("172.18.0.3", "agent-0.", 3),
        ("172.18.0.3", "agent-0.local.", 3),
        ("fd00::3", "agent-0.", 4),
        ("192.168.49.1", "host.minikube.internal.", 5),
        ("10.96.100.10", "kubia.default.svc.cluster.local.", 6),
        ("fe80::1", "linklocal.", 10),
    ]
    assert errors == [
        "NodeHosts:7: 'not-an-ip' is not an IPv4 or IPv6 address; line skipped",
        "NodeHosts:8: '10.0.0.9' has no host name after it; line skipped",
        "NodeHosts:9: 'bad..name' is not a valid host name; line skipped",
    ]


def test_table_records_reverse_and_zones():
    hosts = Hosts(HostsSettings(inline=tuple(NODE_HOSTS.splitlines()), zones=("Internal", "agent-0.local.")))
    assert set(hosts.table.addresses) == {"agent-0.local.", "host.minikube.internal."}
    assert set(hosts.table.pointers) == {"3.0.18.172.in-addr.arpa.", "1.49.168.192.in-addr.arpa."}
    assert hosts.table.pointers["3.0.18.172.in-addr.arpa."][0].label == "agent-0.local."
    assert not Hosts(HostsSettings(inline=("10.0.0.1 a",), reverse=False)).table.pointers


# --------------------------------------------------------------------------- through the server


@pytest.fixture
def serve(serve_zones):
    async def make(hosts: HostsSettings) -> Serving:
        return await serve_zones(hosts=hosts)

    return make


def data(reply: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in reply.answer for rd in rrset)


def write(path: Path, text: str | bytes) -> None:
    """Save as an editor does: a new file renamed over the old one."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(text if isinstance(text, bytes) else text.encode())
    temp.replace(path)


async def test_answers_a_aaaa_and_ptr_before_the_cluster_zone(tmp_path, serve):
    hosts_file = tmp_path / "NodeHosts"
    hosts_file.write_text(NODE_HOSTS)
    serving = await serve(HostsSettings(files=(str(hosts_file),)))

    reply = await ask(serving, "Agent-0.")
    assert data(reply) == ["172.18.0.3"]
    assert reply.answer[0].ttl == 3600  # CoreDNS's hosts default
    assert reply.answer[0].name.to_text() == "Agent-0."  # the client's letter case
    assert reply.flags & dns.flags.AA
    assert data(await ask(serving, "agent-0", "AAAA", tcp=True)) == ["fd00::3"]
    assert data(await ask(serving, "host.minikube.internal")) == ["192.168.49.1"]
    assert data(await ask(serving, "3.0.18.172.in-addr.arpa", "PTR")) == ["agent-0.", "agent-0.local."]
    ptr6 = dns.reversename.from_address("fd00::3").to_text()
    assert data(await ask(serving, ptr6, "PTR")) == ["agent-0."]

    # A name with addresses, but not of the asked type: NOERROR, no records (as CoreDNS, no SOA).
    nodata = await ask(serving, "server-0", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and not nodata.authority

    # The entries come before the zone: this cluster name is answered from the file.
    assert data(await ask(serving, "kubia.default.svc.cluster.local")) == ["10.96.100.10"]
    assert (await ask(serving, "kubia.default.svc.cluster.local")).answer[0].ttl == 3600


async def test_names_not_in_the_file_fall_through(tmp_path, serve):
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text("172.18.0.2 server-0\n")
    serving = await serve(HostsSettings(files=(str(hosts_file),)))
    # to the cluster zone: its records, its TTL, its NXDOMAIN with SOA
    reply = await ask(serving, "kubia.default.svc.cluster.local")
    assert data(reply) == ["10.96.100.10"] and reply.answer[0].ttl == 5
    missing = await ask(serving, "nope.default.svc.cluster.local")
    assert missing.rcode() == dns.rcode.NXDOMAIN and missing.authority
    # a PTR the file lacks goes to the cluster's reverse zone
    assert data(await ask(serving, "10.100.96.10.in-addr.arpa", "PTR")) == ["kubia.default.svc.cluster.local."]
    # and a name neither has gets what the server gives names outside its zones
    assert not serving.hosts.serves("example.com.")
    assert serving.hosts.serves("server-0.")
    assert (await ask(serving, "example.com")).rcode() != dns.rcode.NOERROR


async def test_without_fallthrough_a_miss_in_the_hosts_zones_is_servfail(serve):
    settings = HostsSettings(inline=("10.1.1.1 db.corp.example",), zones=("corp.example.",), fallthrough=False)
    serving = await serve(settings)
    assert data(await ask(serving, "db.corp.example")) == ["10.1.1.1"]
    assert (await ask(serving, "web.corp.example")).rcode() == dns.rcode.SERVFAIL  # as CoreDNS
    assert serving.hosts.serves("web.corp.example.")
    assert data(await ask(serving, "kubia.default.svc.cluster.local")) == ["10.96.100.10"]  # outside its zones


class _Signal(logging.Handler):
    """Sets an asyncio event when a record containing ``text`` is logged."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text
        self.event = asyncio.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        if self.text in message:
            self.event.set()


@pytest.fixture
def hosts_log():
    handlers = []

    def listen(text: str) -> _Signal:
        handler = _Signal(text)
        logging.getLogger("clusterdns.hosts").addHandler(handler)
        handlers.append(handler)
        return handler

    yield listen
    for handler in handlers:
        logging.getLogger("clusterdns.hosts").removeHandler(handler)


async def reloaded(serving: Serving) -> asyncio.Event:
    """An event set when the next reload changes some names."""
    event = asyncio.Event()
    serving.hosts.listeners.append(lambda names: event.set())
    return event


async def test_reload_after_an_edit_drops_only_the_changed_cached_answers(tmp_path, serve, hosts_log):
    hosts_file = tmp_path / "NodeHosts"
    hosts_file.write_text(NODE_HOSTS)
    serving = await serve(HostsSettings(files=(str(hosts_file),)))
    responder = serving.dns.responder
    for _ in range(2):  # the second is a cache hit
        assert data(await ask(serving, "server-0")) == ["172.18.0.2"]
        assert data(await ask(serving, "agent-0")) == ["172.18.0.3"]
        assert (await ask(serving, "new-node")).rcode() != dns.rcode.NOERROR
    assert responder.hits >= 3

    event = await reloaded(serving)
    write(hosts_file, NODE_HOSTS.replace("172.18.0.2", "172.18.0.9") + "172.18.0.4 new-node\n")
    await asyncio.wait_for(event.wait(), WAIT)
    hits = responder.hits
    assert data(await ask(serving, "server-0")) == ["172.18.0.9"]
    assert data(await ask(serving, "new-node")) == ["172.18.0.4"]
    assert data(await ask(serving, "4.0.18.172.in-addr.arpa", "PTR")) == ["new-node."]
    assert responder.hits == hits  # those three were dropped from the caches ...
    assert data(await ask(serving, "agent-0")) == ["172.18.0.3"]
    assert responder.hits == hits + 1  # ... and this unchanged one was not

    # a second save (the watch survives the rename of the first) with a bad line: the rest applies
    event = await reloaded(serving)
    errors = hosts_log("NodeHosts:8:")
    write(hosts_file, NODE_HOSTS + "172.18.0.5 also-new\n999.1.1.1 broken\n")
    await asyncio.wait_for(event.wait(), WAIT)
    await asyncio.wait_for(errors.event.wait(), WAIT)
    assert "NodeHosts:8: '999.1.1.1' is not an IPv4 or IPv6 address; line skipped" in " ".join(errors.messages)
    assert data(await ask(serving, "also-new")) == ["172.18.0.5"]
    assert data(await ask(serving, "server-0")) == ["172.18.0.2"]
    assert (await ask(serving, "new-node")).rcode() != dns.rcode.NOERROR


async def test_unreadable_or_vanished_file_keeps_the_last_good_entries(tmp_path, serve, hosts_log):
    hosts_file = tmp_path / "NodeHosts"
    hosts_file.write_text(NODE_HOSTS)
    serving = await serve(HostsSettings(files=(str(hosts_file),)))
    assert data(await ask(serving, "server-0")) == ["172.18.0.2"]

    broken = hosts_log("cannot read it")
    write(hosts_file, b"172.18.0.7 server-0\n\xff\xfe not text\n")
    await asyncio.wait_for(broken.event.wait(), WAIT)
    assert any("keeping its last 6 entries" in m for m in broken.messages)
    assert data(await ask(serving, "server-0")) == ["172.18.0.2"]

    gone = hosts_log("it is gone")
    hosts_file.unlink()
    await asyncio.wait_for(gone.event.wait(), WAIT)
    assert data(await ask(serving, "server-0")) == ["172.18.0.2"]

    event = await reloaded(serving)
    write(hosts_file, "172.18.0.8 server-0\n")
    await asyncio.wait_for(event.wait(), WAIT)
    assert data(await ask(serving, "server-0")) == ["172.18.0.8"]
    assert (await ask(serving, "agent-0")).rcode() != dns.rcode.NOERROR


async def test_a_configmap_volume_update_is_seen(tmp_path, serve):
    """Kubernetes swaps a ``..data`` symlink; the file itself is a symlink that never changes."""
    volume = tmp_path / "volume"
    (volume / "..v1").mkdir(parents=True)
    (volume / "..v1" / "NodeHosts").write_text("172.18.0.2 server-0\n")
    os.symlink("..v1", volume / "..data")
    os.symlink("..data/NodeHosts", volume / "NodeHosts")
    serving = await serve(HostsSettings(files=(str(volume / "NodeHosts"),)))
    assert data(await ask(serving, "server-0")) == ["172.18.0.2"]

    event = await reloaded(serving)
    (volume / "..v2").mkdir()
    (volume / "..v2" / "NodeHosts").write_text("172.18.0.6 server-0\n")
    os.symlink("..v2", volume / "..data_tmp")
    os.replace(volume / "..data_tmp", volume / "..data")
    await asyncio.wait_for(event.wait(), WAIT)
    assert data(await ask(serving, "server-0")) == ["172.18.0.6"]


def test_cli_hosts_file_must_exist(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--manifests", str(ZONES), "--hosts", str(tmp_path / "missing")])
    assert exc.value.code == 2
    assert "--hosts" in capsys.readouterr().err


async def test_hosts_names_count_as_served_so_they_are_never_forwarded(serve):
    serving = await serve(HostsSettings(inline=("192.168.49.1 host.minikube.internal",)))
    responder = serving.dns.responder
    assert responder.serves("host.minikube.internal.")
    assert responder.serves("1.49.168.192.in-addr.arpa.")
    assert responder.serves("kubia.default.svc.cluster.local.")
    assert not responder.serves("example.com.")


async def test_a_hosts_name_the_cluster_zone_lacks_is_not_a_negative_answer(tmp_path, serve):
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text("10.0.0.7 legacy.default.svc.cluster.local\n")
    serving = await serve(HostsSettings(files=(str(hosts_file),)))
    assert data(await ask(serving, "legacy.default.svc.cluster.local")) == ["10.0.0.7"]
    for _ in range(2):  # cached NXDOMAIN from the zone's fast negative path
        assert (await ask(serving, "later.default.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN
    event = await reloaded(serving)
    write(hosts_file, "10.0.0.7 legacy.default.svc.cluster.local\n10.0.0.8 later.default.svc.cluster.local\n")
    await asyncio.wait_for(event.wait(), WAIT)
    assert data(await ask(serving, "later.default.svc.cluster.local")) == ["10.0.0.8"]


async def test_corednss_hosts_metrics(tmp_path, serve):
    import re
    import time

    hosts_file = tmp_path / "NodeHosts"
    hosts_file.write_text(NODE_HOSTS)
    before = time.time()
    serving = await serve(HostsSettings(files=(str(hosts_file),)))
    text = serving.metrics.exposition().decode()
    # 6 addresses by name, 6 names by address (172.18.0.3 has two)
    assert re.search(r"^coredns_hosts_entries 12\.0$", text, re.M), text
    stamp = float(re.search(r"^coredns_hosts_reload_timestamp_seconds (\S+)$", text, re.M).group(1))
    assert before <= stamp <= time.time()
