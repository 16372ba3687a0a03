"""Manifest faults a serving process must survive: a vanished or swapped directory, half-written
and oversized files, a slow parse, and an edit Kubernetes would reject.

Each test runs the whole server (:class:`Serving`) on 127.0.0.1 and checks answers with dnspython
over real UDP, and /ready and /metrics over real HTTP.  Waits are on the source's own state changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import shutil
import subprocess
import threading
from pathlib import Path

import dns.rcode
import pytest

from clusterdns.serving import ServeOptions, Serving
from clusterdns.sources import manifests as manifests_module
from tests.test_cli import CLI, ENV
from tests.test_kube_e2e import addresses, http_get

NAME = "web.default.svc.cluster.local"


def services(count: int, ip_prefix: str = "10.96", start: int = 0) -> str:
    """``count`` Service documents s<start>..; each IP encodes its number under ``ip_prefix``."""
    return "".join(
        f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}}}\n"
        f"spec: {{clusterIP: {ip_prefix}.{i // 250}.{i % 250 + 1}}}\n"
        for i in range(start, start + count)
    )


def web(ip: str) -> str:
    return f"apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{clusterIP: {ip}, clusterIPs: [{ip}]}}\n"


@pytest.fixture
def serve(started):
    """Start Serving instances on manifests; close them all after the test."""

    async def make(*paths: Path, **overrides) -> Serving:
        return await started(Serving(ServeOptions(manifests=[str(p) for p in paths], listen=[("127.0.0.1", 0)],
                                                  http=("127.0.0.1", 0), **overrides)))

    return make


def metric(body: str, name: str) -> float:
    (value,) = [float(line.split()[-1]) for line in body.splitlines() if line.startswith(name + " ")]
    return value


async def test_removed_directory_keeps_serving_reports_not_ready_and_is_picked_up_again(tmp_path, serve, caplog):
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "web.yaml").write_text(web("10.96.0.5"))
    serving = await serve(zones)
    source = serving.manifests
    assert await addresses(serving, NAME) == ["10.96.0.5"]

    shutil.rmtree(zones)
    await source.wait_until(lambda: source.missing)
    assert await addresses(serving, NAME) == ["10.96.0.5"]  # the last good state, not NXDOMAIN
    status, body = await http_get(serving, "/ready")
    assert status == 503 and "zones gone" in body and "last good state" in body
    assert metric((await http_get(serving, "/metrics"))[1], "clusterdns_manifest_paths_missing") == 1
    assert any("is gone" in r.message and r.levelno == logging.ERROR for r in caplog.records)

    staging = tmp_path / "staging"  # it comes back (as a deploy tool would put it: moved in whole)
    staging.mkdir()
    (staging / "web.yaml").write_text(web("10.96.0.6"))
    (staging / "new.yaml").write_text(web("10.96.0.7").replace("name: web", "name: new"))
    staging.rename(zones)
    await source.wait_until(lambda: not source.missing and source.settling == frozenset()
                            and serving.dns.cluster.get("Service", "default", "new") is not None)
    assert await addresses(serving, NAME) == ["10.96.0.6"]
    assert await addresses(serving, "new.default.svc.cluster.local") == ["10.96.0.7"]
    assert (await http_get(serving, "/ready"))[0] == 200
    # ...and it is watched again: a later edit is applied
    (zones / "web.yaml").write_text(web("10.96.0.8"))
    await source.wait_until(lambda: serving.dns.cluster.get("Service", "default", "web").cluster_ips == ("10.96.0.8",))
    assert await addresses(serving, NAME) == ["10.96.0.8"]


async def test_directory_recreated_at_once_is_watched_again(tmp_path, serve):
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "web.yaml").write_text(web("10.96.0.5"))
    serving = await serve(zones)
    source = serving.manifests
    for ip in ("10.96.0.6", "10.96.0.7"):  # `rm -r zones && mkdir zones && ...`: often the same inode number
        shutil.rmtree(zones)
        zones.mkdir()
        (zones / "web.yaml").write_text(web(ip))
        await source.wait_until(lambda ip=ip: serving.dns.cluster.get("Service", "default", "web").cluster_ips == (ip,))
    (zones / "web.yaml").write_text(web("10.96.0.8"))  # an edit after that is still seen
    await source.wait_until(lambda: serving.dns.cluster.get("Service", "default", "web").cluster_ips == ("10.96.0.8",))
    assert await addresses(serving, NAME) == ["10.96.0.8"]
    assert not source.missing


async def test_symlink_swapped_or_dangling(tmp_path, serve):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "web.yaml").write_text(web("10.96.0.5"))
    (b / "web.yaml").write_text(web("10.96.0.6"))
    link = tmp_path / "current"
    link.symlink_to(a)
    serving = await serve(link)
    source = serving.manifests
    assert await addresses(serving, NAME) == ["10.96.0.5"]

    swap = tmp_path / "current.new"  # an atomic swap, as `ln -sfn` + rename and ConfigMap mounts do
    swap.symlink_to(b)
    swap.replace(link)
    await source.wait_until(lambda: serving.dns.cluster.get("Service", "default", "web").cluster_ips == ("10.96.0.6",))
    assert await addresses(serving, NAME) == ["10.96.0.6"]
    (b / "web.yaml").write_text(web("10.96.0.9"))  # the new target is the one watched
    await source.wait_until(lambda: serving.dns.cluster.get("Service", "default", "web").cluster_ips == ("10.96.0.9",))

    shutil.rmtree(b)  # the link now points nowhere
    await source.wait_until(lambda: source.missing)
    assert await addresses(serving, NAME) == ["10.96.0.9"]
    assert (await http_get(serving, "/ready"))[0] == 503


async def test_file_written_in_two_steps_is_never_served_half_done(tmp_path, serve):
    zones = tmp_path / "zones"
    zones.mkdir()
    f = zones / "many.yaml"
    f.write_text(services(400))
    serving = await serve(zones)
    source = serving.manifests
    second_half = [f"s{i}.default.svc.cluster.local" for i in range(200, 400, 20)]
    seen: list[object] = []
    done = asyncio.Event()

    async def query_all_the_time():
        while not done.is_set():
            for name in second_half:
                seen.append(await addresses(serving, name))

    querier = asyncio.create_task(query_all_the_time())
    new = services(400, ip_prefix="10.97")
    cut = new.index("---", len(new) // 2)  # a whole document boundary: the half parses cleanly
    with f.open("w") as out:
        out.write(new[:cut])
        out.flush()
        # The watcher has seen the first write and is waiting for the file to stop changing.
        await source.wait_until(lambda: f in source.settling or source.reloads > 0)
        assert source.reloads == 0
        out.write(new[cut:])
    await source.wait_until(lambda: source.reloads > 0 and not source.settling)
    await asyncio.sleep(0)
    done.set()
    await querier
    assert await addresses(serving, "s399.default.svc.cluster.local") == ["10.97.1.150"]
    assert seen and dns.rcode.NXDOMAIN not in seen  # no query saw the half file
    assert source.reloads == 1  # applied once, whole


async def test_a_slow_parse_does_not_stop_answers(tmp_path, serve, monkeypatch):
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "web.yaml").write_text(web("10.96.0.5"))
    serving = await serve(zones, manifest_settle=0.0)
    source = serving.manifests
    reading, release = threading.Event(), threading.Event()
    real_read_file = manifests_module.read_file

    def slow_read_file(path, *args, **kwargs):  # a parse that takes as long as the test wants
        reading.set()
        release.wait(10)
        return real_read_file(path, *args, **kwargs)

    monkeypatch.setattr(manifests_module, "read_file", slow_read_file)
    try:
        (zones / "web.yaml").write_text(web("10.96.0.6"))
        await asyncio.to_thread(reading.wait, 10)
        for _ in range(5):  # the event loop is free while the file is being read
            assert await addresses(serving, NAME) == ["10.96.0.5"]
    finally:
        release.set()
    await source.wait_until(lambda: source.reloads > 0)
    assert await addresses(serving, NAME) == ["10.96.0.6"]


async def test_oversized_file_is_skipped_with_an_error_and_keeps_its_last_good_state(tmp_path, serve, caplog):
    zones = tmp_path / "zones"
    zones.mkdir()
    f = zones / "web.yaml"
    f.write_text(web("10.96.0.5"))
    serving = await serve(zones, max_manifest_bytes=200, manifest_settle=0.0)
    source = serving.manifests
    f.write_text(web("10.96.0.6") + "# padding\n" * 40)
    await source.wait_until(lambda: f in source.errors)
    (message,) = source.errors[f]
    assert "web.yaml" in message and "over the limit of 200 bytes (--max-manifest-bytes)" in message
    assert await addresses(serving, NAME) == ["10.96.0.5"]


def test_a_sparse_gigabyte_file_is_not_read(tmp_path):
    (tmp_path / "web.yaml").write_text(web("10.96.0.5"))
    with (tmp_path / "huge.yaml").open("wb") as f:
        f.truncate(1 << 30)  # 1 GiB, sparse: nothing on disk, all of it if read
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = subprocess.run([*CLI, "check", "--manifests", "."], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, env=ENV)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert result.returncode == 1
    assert "huge.yaml: 1 GiB is over the limit of 64 MiB (--max-manifest-bytes); skipped" in result.stderr
    assert "Service          1" in result.stdout
    assert max(before, peak_kib) < 400 * 1024, "the child read the file"


async def test_editing_only_cluster_ip_next_to_cluster_ips_is_an_error_not_silence(tmp_path, serve, caplog):
    zones = tmp_path / "zones"
    zones.mkdir()
    f = zones / "web.yaml"
    f.write_text(web("10.96.0.5"))  # as `kubectl get -o yaml` writes it: clusterIP and clusterIPs
    serving = await serve(zones, manifest_settle=0.0)
    source = serving.manifests
    f.write_text(web("10.96.0.5").replace("clusterIP: 10.96.0.5", "clusterIP: 10.96.0.6"))
    await source.wait_until(lambda: f in source.errors)
    (message,) = source.errors[f]
    assert '(Service default/web): spec.clusterIP: "10.96.0.6" disagrees with spec.clusterIPs[0] "10.96.0.5"' in message
    assert any(message in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert await addresses(serving, NAME) == ["10.96.0.5"]  # the last good state, and the log says why


def test_max_manifest_bytes_is_parsed_and_checked():
    for args, code in ((["--max-manifest-bytes", "64M"], 0), (["--max-manifest-bytes", "lots"], 2),
                       (["--max-manifest-bytes", "0"], 2)):
        result = subprocess.run([*CLI, "check", *args, "--manifests", "zones"], cwd=Path(__file__).parent.parent,
                                capture_output=True, text=True, timeout=60, env=ENV)
        assert result.returncode == code, result.stderr
    assert os.path.exists(Path(__file__).parent.parent / "zones")
