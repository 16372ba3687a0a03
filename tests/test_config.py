"""Corefile → settings (clusterdns/config.py), on text: what each plugin sets, and every error with its line."""

from __future__ import annotations

import pytest

from clusterdns import config as corefile_config
from clusterdns.cli import main
from clusterdns.config import ConfigErrors, parse_duration, relocate
from clusterdns.corefile import parse


def load(text: str):
    return corefile_config.from_blocks(parse(text), "Corefile")


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load(text)
    return [str(e) for e in caught.value.errors]


def test_kubernetes_options_map_onto_the_settings():
    config = load(
        ".:1053 {\n bind 127.0.0.1 ::1\n kubernetes k8s.internal in-addr.arpa ip6.arpa {\n"
        "  kubeconfig /k/config ctx\n  namespaces default shop\n  labels app=web, tier!=db\n"
        "  namespace_labels team=a\n  pods verified\n  endpoint_pod_names\n  ttl 7\n"
        "  noendpoints\n  fallthrough in-addr.arpa\n  ignore empty_service\n }\n}\n"
    )
    options, settings = config.options, config.options.settings
    assert options.listen == [("127.0.0.1", 1053), ("::1", 1053)]
    assert (options.kubeconfig, options.context) == ("/k/config", "ctx")
    assert options.namespaces == frozenset({"default", "shop"})
    assert (options.labels, options.namespace_labels) == ("app=web, tier!=db", "team=a")
    assert (settings.zone, settings.reverse, settings.pods, settings.ttl) == ("k8s.internal.", True, "verified", 7)
    assert settings.endpoint_pod_names and settings.noendpoints and settings.ignore_empty_service
    assert config.kube_fallthrough == ("in-addr.arpa.",)


def test_the_kubernetes_zones_default_to_the_blocks():
    config = load("cluster.local:53 {\n kubernetes\n}\n")
    assert (config.options.settings.zone, config.options.settings.reverse) == ("cluster.local.", False)


def test_health_ready_prometheus_listen_where_the_plugins_default():
    config = load(".:53 {\n health\n ready\n prometheus\n kubernetes cluster.local\n}\n")
    assert sorted(config.options.http_listeners) == [
        ("", 8080, frozenset({"/health"})), ("", 8181, frozenset({"/ready"})),
        ("127.0.0.1", 9153, frozenset({"/metrics"})),
    ]
    shared = load(".:53 {\n health 127.0.0.1:9000\n prometheus 127.0.0.1:9000\n kubernetes cluster.local\n}\n")
    assert shared.options.http_listeners == (("127.0.0.1", 9000, frozenset({"/health", "/metrics"})),)


def test_forward_cache_hosts_log_rewrite_reload():
    config = load(
        ".:53 {\n kubernetes cluster.local\n"
        " forward . 127.0.0.1:5300 [::1] {\n  policy sequential\n  max_concurrent 10\n"
        "  prefer_udp\n  expire 5s\n  max_fails 3\n  health_check 1s\n }\n"
        " cache 60 {\n  success 500 120 2\n  denial 50 30\n  serve_stale 1h\n }\n"
        " hosts /etc/extra.hosts example.org {\n  10.0.0.1 a.example.org\n  ttl 20\n  reload 2s\n  no_reverse\n  fallthrough\n }\n"
        " log . {\n  class denial error\n }\n"
        " rewrite name suffix .corp.example. .default.svc.cluster.local. answer auto\n"
        " reload 10s 2s\n loadbalance round_robin\n}\n"
        "stub.example:53 {\n forward . 127.0.0.2\n cache 60 {\n  success 500 120 2\n  denial 50 30\n  serve_stale 1h\n }\n}\n"
    )
    main, stub = config.forwards
    assert (main.zone, main.upstreams, main.policy, main.max_concurrent) == (".", (("127.0.0.1", 5300), ("::1", 53)), "sequential", 10)
    assert (main.prefer_udp, main.expire, main.max_fails, main.health_check) == (True, 5.0, 3, 1.0)
    assert any("max_fails 3: clusterdns marks an upstream down at its first failure" in n for n in config.notes)
    forward = corefile_config.serve_options(config).forward
    assert (forward.upstreams, forward.policy, forward.max_concurrent, forward.tcp_idle, forward.health_check) == (
        (("127.0.0.1", 5300), ("::1", 53)), "sequential", 10, 5.0, 1.0)
    assert [(s.zone, s.upstreams) for s in forward.stubs] == [("stub.example.", (("127.0.0.2", 53),))]
    assert (forward.cache_size, forward.cache_max_ttl, forward.denial_max_ttl, forward.serve_stale) == (500, 120, 30, 3600.0)
    assert not forward.loop_check  # no loop plugin here
    assert (stub.zone, stub.upstreams) == ("stub.example.", (("127.0.0.2", 53),))
    cache = config.cache
    assert (cache.success_size, cache.max_ttl, cache.min_ttl, cache.denial_size, cache.denial_max_ttl, cache.serve_stale) == (
        500, 120, 2, 50, 30, 3600.0)
    hosts = config.options.hosts
    assert (hosts.files, hosts.inline, hosts.zones, hosts.ttl, hosts.reload, hosts.reverse, hosts.fallthrough) == (
        ("/etc/extra.hosts",), ("10.0.0.1 a.example.org",), ("example.org.",), 20, 2.0, False, True)
    assert config.query_log.classes == {"denial", "error"}
    (rule,) = config.rewrites
    assert rule.apply("db.corp.example.") == "db.default.svc.cluster.local."
    assert config.reload == (10.0, 2.0) and config.loadbalance


def test_errors_name_file_line_and_plugin_all_at_once():
    found = errors(
        ".:53 {\n"  # 1
        " kubernetes cluster.local {\n"  # 2
        "  pods maybe\n"  # 3
        "  tls a b c\n"  # 4
        " }\n"  # 5
        " dnssec\n"  # 6
        " forward . tls://1.1.1.1 {\n  force_tcp\n }\n"  # 7-9
        " cache 30 {\n  prefetch 10\n }\n"  # 10-12
        " health nonsense\n"  # 13
        " bind eth0\n"  # 14
        " rewrite type A AAAA\n"  # 15
        " reload 1s\n"  # 16
        "}\n"
    )
    supported = ", ".join(corefile_config.SUPPORTED)
    kubernetes = ", ".join(corefile_config.KUBERNETES_OPTIONS)
    assert found == [  # every error, in the order of the text
        f'Corefile:3: kubernetes: option "pods maybe" is not supported by clusterdns or is malformed (supported: {kubernetes})',
        f'Corefile:4: kubernetes: option "tls a b c" is not supported by clusterdns or is malformed (supported: {kubernetes})',
        f'Corefile:6: plugin "dnssec" is not supported by clusterdns (supported: {supported})',
        "Corefile:7: forward to tls://1.1.1.1: tls:// upstreams are not supported by clusterdns (dns:// only)",
        "Corefile:8: forward force_tcp is not supported by clusterdns (it asks over UDP, then TCP on TC)",
        "Corefile:11: cache prefetch is not supported by clusterdns",
        "Corefile:13: health nonsense: expected [HOST]:PORT, e.g. :8080",
        "Corefile:14: bind eth0: clusterdns binds IP addresses, not interface names",
        "Corefile:15: rewrite: clusterdns rewrites the name only, not type (rewrite name [TYPE] FROM TO [answer auto])",
        "Corefile:16: reload: the interval must be at least 2s, as CoreDNS requires",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        (".:53 {\n errors\n}\n", "Corefile:1: no server block has the kubernetes plugin: clusterdns serves a cluster's names"),
        (".:53 {\n kubernetes a.local b.local\n}\n", "Corefile:2: kubernetes: clusterdns serves exactly one cluster domain, got a.local., b.local."),
        (".:53 {\n kubernetes cluster.local\n}\nx.local:53 {\n kubernetes x.local\n}\n",
         "Corefile:5: a second kubernetes plugin (the first is in .:53 at Corefile:1): clusterdns serves one cluster"),
        ("tls://.:853 {\n kubernetes cluster.local\n}\n",
         "Corefile:1: tls:// servers are not supported by clusterdns (only dns://, plain UDP and TCP)"),
        (".:53 {\n kubernetes cluster.local\n}\nstub.local:1053 {\n forward . 127.0.0.1\n}\n",
         "Corefile:4: server block stub.local:1053 (Corefile:4) listens on 0.0.0.0:1053, [::]:1053, the kubernetes "
         "block on 0.0.0.0:53, [::]:53: clusterdns answers every zone on the same listeners"),
        (".:53 {\n kubernetes cluster.local\n}\nstub.local:53 {\n errors\n}\n",
         "Corefile:4: server block stub.local:53 (Corefile:4) has no forward: clusterdns serves other zones only by forwarding them"),
        (".:53 {\n kubernetes cluster.local\n cache 30 {\n  disable success example.org\n }\n}\n",
         "Corefile:4: cache disable success example.org.: clusterdns can turn its cache off only for the cluster zones "
         "(cluster.local.), whose answers it never TTL-caches"),
        (".:53 {\n kubernetes cluster.local\n log\n log\n}\n", "Corefile:4: log appears twice in this server block (first at Corefile:3)"),
    ],
)
def test_shapes_clusterdns_cannot_take_are_errors(text, message):
    assert errors(text) == [message]


def test_durations():
    assert [parse_duration(t) for t in ("5s", "1m30s", "500ms", "2h", "10")] == [5, 90, 0.5, 7200, 10]
    with pytest.raises(ValueError):
        parse_duration("5 s")


def test_relocate_moves_named_listeners_or_every_host():
    options = load(".:53 {\n health\n prometheus :9153\n kubernetes cluster.local\n}\n").options
    moved = relocate(options, {":53": "127.0.0.1:23053", ":8080": "127.0.0.1:23080"})
    assert moved.listen == [("127.0.0.1", 23053)]  # both families of :53 moved onto one address
    assert sorted(h[:2] for h in moved.http_listeners) == [("", 9153), ("127.0.0.1", 23080)]
    every = relocate(options, {"*": "127.0.0.1"})
    assert every.listen == [("127.0.0.1", 53)] and sorted(h[:2] for h in every.http_listeners) == [("127.0.0.1", 8080), ("127.0.0.1", 9153)]


def test_check_corefile_prints_the_settings_or_every_error(tmp_path, capsys):
    good = tmp_path / "Corefile"
    good.write_text(".:53 {\n errors\n ready 127.0.0.1:8181\n kubernetes cluster.local in-addr.arpa ip6.arpa\n cache 30\n}\n")
    assert main(["check", "--corefile", str(good)]) == 0
    out = capsys.readouterr().out
    assert "  dns  0.0.0.0:53 (UDP and TCP)" in out and "  dns  [::]:53 (UDP and TCP)" in out and "  http 127.0.0.1:8181 /ready" in out
    assert "zones: cluster.local. in-addr.arpa. ip6.arpa. (ttl 5, pods insecure)" in out
    bad = tmp_path / "Bad"
    bad.write_text(".:53 {\n kubernetes cluster.local\n dnssec\n}\n")
    assert main(["check", "--corefile", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f'{bad}:3: plugin "dnssec" is not supported by clusterdns' in out and "1 error(s)" in out


def test_serve_refuses_a_corefile_with_errors_with_status_2(tmp_path, caplog):
    bad = tmp_path / "Corefile"
    bad.write_text(".:53 {\n kubernetes cluster.local\n dnssec\n}\n")
    assert main(["serve", "--corefile", str(bad)]) == 2
    assert f'{bad}:3: plugin "dnssec" is not supported by clusterdns' in caplog.text


def test_serve_refuses_flags_a_corefile_would_silently_override(tmp_path, capsys):
    # --no-forward or --upstream beside a Corefile that forwards to /etc/resolv.conf must not be a quiet no-op
    corefile = tmp_path / "Corefile"
    corefile.write_text(".:53 {\n kubernetes cluster.local\n forward . /etc/resolv.conf\n}\n")
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--corefile", str(corefile), "--no-forward", "--listen", "127.0.0.1:0", "--ttl", "9"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--ttl, --listen, --no-forward: not used with --corefile" in err and "--relocate" in err


def test_check_refuses_manifest_flags_beside_a_corefile(tmp_path, capsys):
    corefile = tmp_path / "Corefile"
    corefile.write_text(".:53 {\n kubernetes cluster.local\n}\n")
    with pytest.raises(SystemExit) as exited:
        main(["check", "--corefile", str(corefile), "--records", "--manifests", "zones"])
    assert exited.value.code == 2
    assert "--manifests, --records: not used with --corefile" in capsys.readouterr().err
    assert main(["check", "--corefile", str(corefile)]) == 0


def test_the_flags_kept_beside_a_corefile_are_not_refused(tmp_path):
    from clusterdns.cli import build_parser, flags_beside_corefile

    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]
    args = parser.parse_args(["serve", "--corefile", "C", "--manifests", "zones", "--relocate", "*=127.0.0.1",
                              "--workers", "2", "--log-level", "debug"])
    assert flags_beside_corefile(args, serve) == []
    worker = parser.parse_args(["serve", "--corefile", "C", "--workers", "1", "--reuse-port", "--http", ""])
    assert flags_beside_corefile(worker, serve) == []  # what workers.py gives an extra worker


def test_forward_takes_the_nameservers_of_a_resolv_conf(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search example\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n")  # documentation addresses
    config = load(f".:53 {{\n kubernetes cluster.local\n forward . {resolv}\n}}\n")
    assert corefile_config.serve_options(config).forward.upstreams == (("192.0.2.53", 53), ("2001:db8::53", 53))
    resolv.write_text("nameserver 127.0.0.1\n")  # a loopback stub would loop back here
    with pytest.raises(ConfigErrors, match=r"Corefile:3: forward \. /.*resolv.conf: nameserver 127.0.0.1 is a loopback stub"):
        corefile_config.serve_options(config)


def test_two_default_forwards_are_an_error():
    assert errors(".:53 {\n kubernetes cluster.local\n forward . 127.0.0.1\n forward . 127.0.0.2\n}\n") == [
        "Corefile:4: a second forward . (the first is at Corefile:3)"]


def test_approximations_are_notes_not_silence():
    config = load(
        ".:53 {\n errors {\n  consolidate 5m \".* timeout$\"\n }\n kubernetes cluster.local\n"
        " forward . 127.0.0.1 {\n  max_fails 5\n }\n cache 30 example.org {\n  success 100\n  denial 50 30 2\n }\n}\n"
    )
    notes = "\n".join(config.notes)
    assert "Corefile:3: errors consolidate: clusterdns reports every repeating error once per 30 s burst" in notes
    assert "forward max_fails 5: clusterdns marks an upstream down at its first failure" in notes
    assert "cache example.org.: clusterdns's cache keeps every forwarded answer" in notes
    assert "cache: success 100 and denial 50 entries: clusterdns bounds each by 100" in notes
    assert "cache: a minimum TTL is not applied by clusterdns" in notes
    assert "kubernetes without fallthrough in-addr.arpa ip6.arpa" in notes


def test_autopath_and_transfer_map_onto_their_flags():
    config = load(".:53 {\n autopath @kubernetes\n transfer {\n  to 10.0.0.0/8 192.0.2.1:53\n  to *\n }\n"
                  " kubernetes cluster.local in-addr.arpa ip6.arpa {\n  pods verified\n }\n}\n")
    assert config.options.settings.autopath  # written before kubernetes: read after the whole block
    assert [str(n) for n in config.options.transfer_to] == ["10.0.0.0/8", "192.0.2.1/32", "0.0.0.0/0", "::/0"]
    assert "Corefile:4: transfer to 192.0.2.1:53: clusterdns sends no NOTIFY; 192.0.2.1 may transfer" in config.notes
    plain = load(".:53 {\n kubernetes cluster.local\n}\n")
    assert not plain.options.settings.autopath and plain.options.transfer_to is None  # the flags' defaults


def test_autopath_and_transfer_errors_name_the_line():
    assert errors(".:53 {\n autopath @kubernetes\n kubernetes cluster.local {\n  pods insecure\n }\n}\n") == [
        "Corefile:2: autopath @kubernetes needs pods verified in the kubernetes plugin: the server finds the asking "
        "pod by its address among known pods"]
    assert errors(".:53 {\n autopath /etc/resolv.conf\n kubernetes cluster.local\n}\n") == [
        "Corefile:2: autopath: clusterdns takes the search path from the kubernetes plugin only (autopath "
        "@kubernetes), not from a resolv.conf"]
    assert errors(".:53 {\n kubernetes cluster.local\n transfer example.org {\n  to nonsense\n }\n}\n") == [
        "Corefile:3: transfer example.org.: clusterdns transfers only the zones it serves",
        "Corefile:3: transfer to 'nonsense': expected an address or CIDR, e.g. 10.0.0.0/8 or ::1"]
    assert errors(".:53 {\n kubernetes cluster.local\n transfer\n}\n") == [
        'Corefile:3: transfer: no "to ADDRESS..." in its block: nobody could transfer']
