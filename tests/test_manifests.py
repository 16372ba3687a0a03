"""Manifest input: kinds and lists, precise errors, and hot reload through a running server."""

import textwrap
import time
from pathlib import Path

import dns.rcode

from clusterdns.sources.manifests import ManifestSource, read_file

from .dnsserver import RunningServer, answers

WEB = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 10.96.5.5
  ports: [{name: http, port: 80}]
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_list_kinds_multi_document_and_skipped_kinds(tmp_path):
    f = write(
        tmp_path / "all.yaml",
        """\
        apiVersion: v1
        kind: ServiceList
        items:
        - {apiVersion: v1, kind: Service, metadata: {name: a}, spec: {clusterIP: 10.96.0.1}}
        - {apiVersion: v1, kind: Service, metadata: {name: b, namespace: shop}, spec: {clusterIP: 10.96.0.2}}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: d}
        ---
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
        ---
        """,
    )
    result = read_file(f)
    assert result.errors == []
    assert sorted(result.objects) == [("Namespace", "", "shop"), ("Service", "default", "a"), ("Service", "shop", "b")]
    assert result.skipped == {"Deployment": 1}


def test_error_names_file_document_object_and_field(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path / "web.yaml",
        """\
        apiVersion: v1
        kind: Namespace
        metadata: {name: shop}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: ok}
        spec: {clusterIP: 10.96.0.1}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        spec:
          ports: [{port: 80}, {port: http}]
        """,
    )
    assert read_file(Path("web.yaml")).errors == [
        'web.yaml: document 3 (Service default/web): spec.ports[1].port: expected an integer 1-65535, got "http"'
    ]


def test_yaml_syntax_error_has_line_and_column(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "bad.yaml", "kind: Service\nmetadata: {name: [x\n")
    (message,) = read_file(Path("bad.yaml")).errors
    assert message.startswith("bad.yaml: document 1: invalid YAML at line 3 column 1")


def test_list_item_errors_name_the_item(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "l.yaml", "kind: List\nitems:\n- {kind: Service, metadata: {name: a}, spec: {clusterIP: nope}}\n")
    assert read_file(Path("l.yaml")).errors == [
        'l.yaml: document 1, items[0] (Service default/a): spec.clusterIPs[0]: expected an IP address, got "nope"'
    ]


def test_bad_file_keeps_last_good_state_and_deleted_file_removes_objects(tmp_path):
    events = []
    f = write(tmp_path / "web.yaml", WEB)
    source = ManifestSource([tmp_path], events.extend)
    source.load()
    events.clear()
    f.write_text(WEB.replace("port: 80", "port: eighty"))
    source.reload({f})
    assert events == [] and f in source.errors
    f.unlink()
    source.reload({f})
    assert [type(e).__name__ for e in events] == ["Delete"]


def wait_for(check, timeout=10.0):
    """Poll ``check`` until it returns true (the server reloads asynchronously); bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_hot_reload_applies_edits_and_keeps_serving_on_errors(tmp_path):
    f = write(tmp_path / "web.yaml", WEB)
    with RunningServer([tmp_path], watch=True) as server:
        assert answers(server.query("web.default.svc.cluster.local")) == ["10.96.5.5"]
        started = time.monotonic()
        f.write_text(WEB.replace("10.96.5.5", "10.96.6.6"))
        def switched():
            got = answers(server.query("web.default.svc.cluster.local"))
            assert got in (["10.96.5.5"], ["10.96.6.6"])  # every query answered, old or new: no gap
            return got == ["10.96.6.6"]

        assert wait_for(switched)
        assert time.monotonic() - started < 2.0, "the edit should be live within about a second"
        # a broken edit is reported and the last good state keeps answering
        f.write_text(WEB.replace("10.96.5.5", "10.96.999.6"))
        assert wait_for(lambda: server.call(lambda: bool(server.source.errors)))
        assert answers(server.query("web.default.svc.cluster.local")) == ["10.96.6.6"]
        # a new file appears; a file removed takes its objects away
        g = write(tmp_path / "more.yaml", WEB.replace("name: web", "name: more").replace("10.96.5.5", "10.96.7.7"))
        assert wait_for(lambda: answers(server.query("more.default.svc.cluster.local")) == ["10.96.7.7"])
        g.unlink()
        assert wait_for(lambda: server.query("more.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN)
        # a whole directory moved in at once
        staging = tmp_path.parent / f"{tmp_path.name}-staging"
        staging.mkdir()
        write(staging / "sub.yaml", WEB.replace("name: web", "name: sub").replace("10.96.5.5", "10.96.8.8"))
        staging.rename(tmp_path / "subdir")
        assert wait_for(lambda: answers(server.query("sub.default.svc.cluster.local")) == ["10.96.8.8"])


def test_hot_reload_of_a_single_file_saved_by_rename(tmp_path):
    f = write(tmp_path / "web.yaml", WEB)
    write(tmp_path / "other.yaml", WEB.replace("name: web", "name: other"))  # not named: never served
    with RunningServer([f], watch=True) as server:
        assert server.query("other.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
        for ip in ("10.96.6.6", "10.96.7.7"):  # twice: the watch survives the first replacement
            temp = tmp_path / ".web.yaml.swp"
            temp.write_text(WEB.replace("10.96.5.5", ip))
            temp.replace(f)
            assert wait_for(lambda ip=ip: answers(server.query("web.default.svc.cluster.local")) == [ip])
        assert server.query("other.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
