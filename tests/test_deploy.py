"""The deployment artefacts say what docs/deploy.md says they say.

Parses deploy/*.yaml, docker-compose.yml, Dockerfile and .dockerignore and
checks the properties that matter for replacing CoreDNS: RBAC exactly
list/watch on exactly the resources clusterdns reads, the Deployment's
replicas, spreading, probes, hardening and ports, the kube-dns Service, the
compose wiring, the image's user and entrypoint.  Every clusterdns command
line in them goes through the real CLI parser, and the image's default listen
pair (0.0.0.0 and [::] on one port) is started for real.

When kubectl is installed the manifests are also run through it.  kubectl has
no offline `apply`: `kubectl apply --dry-run=client` and `kubectl create
--dry-run=client` both need an API server for discovery (they fail with
"unable to recognize ... connection refused").  So

* ``kubectl apply --dry-run=client --validate=false -f deploy/`` is run against
  tests/fake_apiserver.py, which serves discovery and answers 404 for each
  object: every kind must map to a served resource and every object must come
  out "created (dry run)", in file order.  (--validate=false: validation would
  download the OpenAPI schema, which the fake does not serve.)

and these work with no server at all:

* ``kubectl label --local -f deploy/`` reads every document the way
  ``kubectl apply -f deploy/`` would (YAML, apiVersion/kind/name, one object
  per document);
* ``kubectl set env|selector|subject --local`` decode objects into kubectl's
  typed Go structs, so a wrong type fails ("cannot unmarshal string into Go
  struct field ..."), and printing the object back shows any field kubectl
  did not recognise: it is missing from the output (a typo such as
  ``readinesProbe`` would be dropped silently by a real apply).

None of these runs the API server's validation or admission: that needs a
cluster (``kubectl apply --dry-run=server -f deploy/``, see docs/deploy.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

NAMESPACE = "kube-system"
NONROOT_UID = 65532
KUBE_DNS_IP = "10.96.0.10"
HTTP_PORT = 9153  # the stock Corefiles' prometheus :9153

NAMESPACED = {"ServiceAccount", "Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "Role", "RoleBinding"}


# --------------------------------------------------------------------------- helpers


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.iterdir() if p.suffix in (".yaml", ".yml"))


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append((path, doc))
    return out


def one(kind: str, name: str) -> dict[str, Any]:
    found = [doc for _, doc in manifests() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind} {name} in deploy/, found {len(found)}"
    return found[0]


def file_of(kind: str, name: str) -> Path:
    return next(p for p, doc in manifests() if doc["kind"] == kind and doc["metadata"]["name"] == name)


def parse_flags(args: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Split a command line into positionals and ``--flag`` values (``--f=v`` or ``--f v``)."""
    positionals: list[str] = []
    flags: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            if "=" in arg:
                name, value = arg.split("=", 1)
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                name, value = arg, args[i + 1]
                i += 1
            else:
                name, value = arg, ""
            flags.setdefault(name, []).append(value)
        else:
            positionals.append(arg)
        i += 1
    return positionals, flags


def port_of(hostport: str) -> int:
    return int(hostport.rsplit(":", 1)[1])


def deployment() -> dict[str, Any]:
    return one("Deployment", "clusterdns")


def pod_spec() -> dict[str, Any]:
    return deployment()["spec"]["template"]["spec"]


def container() -> dict[str, Any]:
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    return containers[0]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def command_of(svc: dict[str, Any]) -> list[str]:
    cmd = svc["command"]
    return cmd.split() if isinstance(cmd, str) else list(cmd)


def leaves(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every (path, scalar) in a JSON-like value; list items are addressed by index."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, path + (i,))
    else:
        yield path, value


def lookup(value: Any, path: tuple) -> Any:
    for step in path:
        value = value[step]
    return value


# --------------------------------------------------------------------------- every manifest


def test_deploy_holds_exactly_the_expected_objects():
    found = sorted((doc["kind"], doc["metadata"]["name"]) for _, doc in manifests())
    assert found == sorted([
        ("ServiceAccount", "clusterdns"),
        ("ClusterRole", "clusterdns"),
        ("ClusterRoleBinding", "clusterdns"),
        ("Deployment", "clusterdns"),
        ("PodDisruptionBudget", "clusterdns"),
        ("Service", "kube-dns"),
    ])


@pytest.mark.parametrize("path,doc", manifests(), ids=lambda v: v.name if isinstance(v, Path) else v["kind"])
def test_manifest_is_well_formed(path, doc):
    assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"]
    assert isinstance(doc.get("kind"), str) and doc["kind"]
    meta = doc["metadata"]
    if doc["kind"] in NAMESPACED:
        assert meta.get("namespace") == NAMESPACE, f"{doc['kind']} {meta['name']} must be in {NAMESPACE}"
    else:
        assert "namespace" not in meta, f"{doc['kind']} is cluster-scoped"


def test_files_apply_in_a_working_order():
    # kubectl apply -f deploy/ goes through files in name order: the
    # ServiceAccount and RBAC must exist before the pods that use them.
    files = manifest_files()
    assert files == sorted(files)
    assert file_of("ServiceAccount", "clusterdns") <= file_of("Deployment", "clusterdns")
    assert file_of("ClusterRoleBinding", "clusterdns") <= file_of("Deployment", "clusterdns")


# --------------------------------------------------------------------------- RBAC


def test_cluster_role_is_exactly_list_watch_on_what_clusterdns_reads():
    role = one("ClusterRole", "clusterdns")
    granted = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, "no resourceNames/nonResourceURLs"
        assert sorted(rule["verbs"]) == ["list", "watch"], rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.add((group, resource))
    assert granted == {
        ("", "services"),
        ("", "namespaces"),
        ("", "pods"),
        ("discovery.k8s.io", "endpointslices"),
    }
    assert "*" not in str(role["rules"])


def test_pods_permission_is_explained():
    text = file_of("ClusterRole", "clusterdns").read_text()
    assert "--pods verified" in text


def test_binding_ties_the_role_to_the_deployments_service_account():
    sa = one("ServiceAccount", "clusterdns")
    binding = one("ClusterRoleBinding", "clusterdns")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "clusterdns"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}]
    assert pod_spec()["serviceAccountName"] == sa["metadata"]["name"]
    assert pod_spec().get("automountServiceAccountToken", True) is True
    assert sa.get("automountServiceAccountToken", True) is True


# --------------------------------------------------------------------------- Deployment


def test_two_replicas_spread_across_nodes():
    dep = deployment()
    assert dep["spec"]["replicas"] == 2
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    terms = pod_spec()["affinity"]["podAntiAffinity"]
    all_terms = [t["podAffinityTerm"] for t in terms.get("preferredDuringSchedulingIgnoredDuringExecution", [])]
    all_terms += terms.get("requiredDuringSchedulingIgnoredDuringExecution", [])
    by_host = [t for t in all_terms if t["topologyKey"] == "kubernetes.io/hostname"]
    assert by_host, "anti-affinity across kubernetes.io/hostname"
    for term in by_host:
        wanted = term["labelSelector"]["matchLabels"]
        assert wanted.items() <= pod_labels.items(), "the anti-affinity must select clusterdns's own pods"


def test_selector_labels_and_kube_dns_service():
    dep = deployment()
    selector = dep["spec"]["selector"]["matchLabels"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    # The existing kube-dns Service selects k8s-app=kube-dns ...
    assert pod_labels["k8s-app"] == "kube-dns"
    # ... but the Deployment's selector must not overlap CoreDNS's (k8s-app=kube-dns).
    assert "k8s-app" not in selector
    svc = one("Service", "kube-dns")
    assert svc["spec"]["selector"].items() <= pod_labels.items()


def test_pod_scheduling_matches_coredns():
    spec = pod_spec()
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["dnsPolicy"] == "Default"
    tolerations = spec["tolerations"]
    assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in tolerations
    assert any(
        t.get("key") == "node-role.kubernetes.io/control-plane" and t.get("effect") == "NoSchedule" for t in tolerations
    )


def test_args_serve_the_clusters_own_corefile_from_the_coredns_configmap():
    c = container()
    assert "command" not in c, "the image's ENTRYPOINT (clusterdns) is kept"
    positionals, flags = parse_flags(c["args"])
    assert positionals == ["serve"]
    assert flags["--corefile"] == ["/etc/coredns/Corefile"]
    # everything else comes from the Corefile, as for CoreDNS; in-cluster credentials
    assert not {"--listen", "--http", "--kubeconfig", "--manifests", "--ttl", "--zone"} & set(flags)
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    # as CoreDNS's own Deployment: the coredns ConfigMap at /etc/coredns (every key: k3s's NodeHosts too)
    assert (mounts["config-volume"]["mountPath"], mounts["config-volume"]["readOnly"]) == ("/etc/coredns", True)
    assert volumes["config-volume"]["configMap"] == {"name": "coredns"}
    # k3s's coredns-custom (its Corefile imports custom/*.override and *.server), optional elsewhere
    assert mounts["custom-config-volume"]["mountPath"] == "/etc/coredns/custom"
    assert volumes["custom-config-volume"]["configMap"] == {"name": "coredns-custom", "optional": True}


def test_container_ports():
    ports = {(p["name"], p["containerPort"], p.get("protocol", "TCP")) for p in container()["ports"]}
    assert ports == {("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", HTTP_PORT, "TCP")}


def test_probes_and_ports_are_where_the_stock_corefiles_listen(tmp_path):
    """health :8080, ready :8181, prometheus :9153 and .:53 in every stock Corefile: the pod spec must match."""
    from clusterdns import config as corefile_config
    from tests.test_stock_corefiles import STOCK

    c = container()
    ready = c["readinessProbe"]["httpGet"]
    alive = c["livenessProbe"]["httpGet"]
    assert ready.get("scheme", "HTTP") == alive.get("scheme", "HTTP") == "HTTP"
    declared = {p["containerPort"] for p in c["ports"]}
    for name, text in STOCK.items():
        path = tmp_path / name
        path.write_text(text)
        options = corefile_config.load(path).options
        served = {paths_: port for _, port, paths in options.http_listeners for paths_ in paths}
        assert (ready["path"], ready["port"]) == ("/ready", served["/ready"]), name
        assert (alive["path"], alive["port"]) == ("/health", served["/health"]), name
        assert served["/metrics"] == HTTP_PORT and {port for _, port in options.listen} == {53} <= declared, name


def test_resources_like_coredns():
    res = container()["resources"]
    assert res["requests"]["memory"] == "70Mi"
    assert res["limits"]["memory"] == "170Mi"
    assert "cpu" not in res["limits"], "no CPU limit: throttling shows up as DNS timeouts"


def test_runs_hardened_as_the_images_non_root_user():
    pod_sc = pod_spec()["securityContext"]
    sc = container()["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == NONROOT_UID == dockerfile_user()[0]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc.get("privileged", False) is False
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}


def test_writable_tmp_for_a_read_only_root():
    mounts = {m["mountPath"]: m["name"] for m in container().get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod_spec().get("volumes", [])}
    assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]]


def test_rollout_and_disruption_budget_keep_one_replica_serving():
    dep = deployment()
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 1
    pdb = one("PodDisruptionBudget", "clusterdns")
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    if "maxUnavailable" in pdb["spec"]:
        assert pdb["spec"]["maxUnavailable"] == 1
    else:
        assert 1 <= pdb["spec"]["minAvailable"] < dep["spec"]["replicas"]


# --------------------------------------------------------------------------- kube-dns Service


def test_kube_dns_service():
    svc = one("Service", "kube-dns")
    assert svc["metadata"]["namespace"] == NAMESPACE
    assert svc["spec"]["clusterIP"] == KUBE_DNS_IP
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert svc["spec"]["selector"] == {"k8s-app": "kube-dns"}
    ports = {(p["name"], p["port"], p.get("protocol", "TCP"), p.get("targetPort", p["port"])) for p in svc["spec"]["ports"]}
    assert ports == {("dns", 53, "UDP", 53), ("dns-tcp", 53, "TCP", 53), ("metrics", 9153, "TCP", 9153)}
    assert svc["metadata"]["annotations"] == {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}
    # every targetPort is a port the container declares
    declared = {p["containerPort"] for p in container()["ports"]}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= declared


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by Docker
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def dockerfile_user() -> tuple[int, int]:
    users = [args for word, args in final_stage() if word == "USER"]
    assert users, "the final stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and (not gid or gid.isdigit()), "numeric USER, so the kubelet can verify runAsNonRoot"
    return int(uid), int(gid or uid)


def test_dockerfile_base_and_stages():
    froms = [args for word, args in dockerfile_instructions() if word == "FROM"]
    assert froms, "no FROM"
    for args in froms:
        assert args.split()[0] == "python:3.11-slim"
    assert any(re.search(r"\bpip install\b.*\s\.(\s|$)", args) for word, args in dockerfile_instructions() if word == "RUN")


def test_dockerfile_runs_as_non_root():
    uid, gid = dockerfile_user()
    assert uid == gid == NONROOT_UID


def test_dockerfile_entrypoint_and_default_command():
    stage = dict((word, args) for word, args in final_stage() if word in ("ENTRYPOINT", "CMD"))
    assert json.loads(stage["ENTRYPOINT"]) == ["clusterdns"]
    assert json.loads(stage["CMD"]) == ["serve", "--listen", "0.0.0.0:53", "--listen", "[::]:53", "--http", "0.0.0.0:8080"]


def test_dockerfile_gives_python_the_bind_capability_in_the_final_stage():
    runs = " ".join(args for word, args in final_stage() if word == "RUN")
    assert re.search(r"setcap cap_net_bind_service=\+ep \"\$\(readlink -f /usr/local/bin/python3\)\"", runs)


def test_dockerignore_keeps_what_pip_install_needs():
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if "*" in lines:  # allowlist style
        for needed in ("!pyproject.toml", "!clusterdns/"):
            assert needed in lines
    else:
        assert "pyproject.toml" not in lines and "clusterdns" not in lines
    for path in ("pyproject.toml", "clusterdns"):
        assert (ROOT / path).exists()


# --------------------------------------------------------------------------- docker-compose.yml


def test_compose_services():
    assert set(compose()["services"]) == {"k3s", "clusterdns", "client", "zones"}


def test_compose_k3s():
    k3s = service("k3s")
    assert k3s["image"].split(":")[0].endswith("rancher/k3s")
    assert k3s["privileged"] is True
    cmd = command_of(k3s)
    assert cmd[0] == "server"
    assert "--disable=coredns" in cmd
    assert any(a.startswith("--cluster-dns=") for a in cmd)
    env = k3s["environment"]
    assert env["K3S_KUBECONFIG_OUTPUT"].startswith("/output/")
    assert int(str(env["K3S_KUBECONFIG_MODE"]), 8) & 0o004, "uid 65532 must be able to read the kubeconfig"
    assert "kubeconfig:/output" in k3s["volumes"]
    assert "healthcheck" in k3s


def test_compose_clusterdns_reads_k3s():
    svc = service("clusterdns")
    k3s = service("k3s")
    assert svc["build"] in (".", {"context": "."})
    # k3s's kubeconfig says https://127.0.0.1:6443: only right inside k3s's network namespace
    assert svc["network_mode"] == "service:k3s"
    assert "networks" not in svc and "ports" not in svc
    assert svc["depends_on"]["k3s"]["condition"] == "service_healthy"
    assert "kubeconfig:/output:ro" in svc["volumes"]
    positionals, flags = parse_flags(command_of(svc))
    assert positionals == ["serve"]
    assert flags["--kubeconfig"] == [k3s["environment"]["K3S_KUBECONFIG_OUTPUT"]]
    assert {port_of(hp) for hp in flags["--listen"]} == {53}
    http_port = port_of(flags["--http"][0])
    assert re.search(rf"http://127\.0\.0\.1:{http_port}/(ready|health)", " ".join(svc["healthcheck"]["test"]))


def test_compose_hardening_matches_the_deployment():
    for name in ("clusterdns", "zones"):
        svc = service(name)
        assert svc["read_only"] is True
        assert svc["cap_drop"] == ["ALL"] and svc["cap_add"] == ["NET_BIND_SERVICE"]
        assert "/tmp" in svc["tmpfs"]
        assert "user" not in svc, "the image's USER (65532) applies"


def test_compose_kube_dns_points_at_clusterdns():
    k3s = service("k3s")
    cluster_dns = next(a.split("=", 1)[1] for a in command_of(k3s) if a.startswith("--cluster-dns="))
    k3s_ip = k3s["networks"]["dns"]["ipv4_address"]
    config_names = {c["source"]: c["target"] for c in k3s["configs"]}
    (source, target), = config_names.items()
    assert target.startswith("/var/lib/rancher/k3s/server/manifests/")
    docs = [d for d in yaml.safe_load_all(compose()["configs"][source]["content"]) if d]
    svc = next(d for d in docs if d["kind"] == "Service")
    eps = next(d for d in docs if d["kind"] == "EndpointSlice")
    assert (svc["metadata"]["name"], svc["metadata"]["namespace"]) == ("kube-dns", NAMESPACE)
    assert svc["spec"]["clusterIP"] == cluster_dns
    assert "selector" not in svc["spec"], "selector-less: the EndpointSlice is written by hand"
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"
    assert eps["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] != "endpointslice-controller.k8s.io"
    assert [a for e in eps["endpoints"] for a in e["addresses"]] == [k3s_ip]


def test_compose_client_queries_clusterdns():
    client = service("client")
    assert client["depends_on"]["clusterdns"]["condition"] == "service_healthy"
    script = " ".join(command_of(client))
    assert "bind-tools" in script
    assert "server=k3s" in script, "clusterdns answers on k3s's address"
    for name in (
        "kubernetes.default.svc.cluster.local",
        "kube-dns.kube-system.svc.cluster.local",
        "dns-version.cluster.local TXT",
        "example.com A",  # a name outside the cluster: forwarded
    ):
        assert name in script


def test_compose_zones_serves_the_repo_zones_read_only():
    zones = service("zones")
    assert zones["build"] in (".", {"context": "."})
    positionals, flags = parse_flags(command_of(zones))
    assert positionals == ["serve"]
    assert "--kubeconfig" not in flags
    (mount,) = [v for v in zones["volumes"] if v.startswith("./zones:")]
    _, target, mode = mount.split(":")
    assert mode == "ro"
    assert flags["--manifests"] == [target]
    assert {port_of(hp) for hp in flags["--listen"]} == {5353}
    published = {p.rsplit(":", 2)[-1] for p in zones["ports"]}
    assert {"5353/udp", "5353/tcp"} <= published
    http_port = port_of(flags["--http"][0])
    assert re.search(rf"http://127\.0\.0\.1:{http_port}/(ready|health)", " ".join(zones["healthcheck"]["test"]))


def test_compose_images_are_built_from_this_repo():
    assert (ROOT / service("clusterdns")["build"] / "Dockerfile").exists()


# --------------------------------------------------------------------------- the real command line


def command_lines() -> dict[str, list[str]]:
    """Every clusterdns command line the artefacts run, by where it comes from."""
    final = dict((word, args) for word, args in final_stage() if word in ("ENTRYPOINT", "CMD"))
    return {
        "Deployment args": container()["args"],
        "Dockerfile CMD": json.loads(final["CMD"]),
        "compose clusterdns": command_of(service("clusterdns")),
        "compose zones": command_of(service("zones")),
    }


@pytest.mark.parametrize("where", sorted(command_lines()))
def test_command_line_is_accepted_by_the_cli(where):
    from clusterdns.cli import build_parser, settings_from
    from clusterdns.server import parse_listen

    argv = command_lines()[where]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: clusterdns rejects {argv}")
    assert args.command == "serve"
    settings_from(args)  # --ttl range and the like
    for text in args.listen or []:
        parse_listen(text)
    if args.http:
        parse_listen(args.http)


NODE_RESOLV_CONF = "nameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch example.internal\n"  # parsed, never asked


def serve_options_of(where: str, tmp_path: Path, monkeypatch):
    """The ServeOptions the real CLI builds from a command line, as the container would start it.

    Paths that exist only in the container are pointed at stand-ins: the node's
    resolv.conf (dnsPolicy: Default) at a file naming documentation addresses,
    the cluster's Corefile at kubeadm's stock one, /zones at the repo's zones/.
    Nothing is started and nothing is sent.
    """
    from clusterdns import cli
    from tests.test_stock_corefiles import STOCK

    resolv = tmp_path / "resolv.conf"
    resolv.write_text(NODE_RESOLV_CONF)
    monkeypatch.setattr(cli, "DEFAULT_RESOLV_CONF", str(resolv))
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    argv = [arg.replace("=/zones", f"={ROOT / 'zones'}") for arg in command_lines()[where]]
    parser = cli.build_parser()
    args = parser.parse_args(argv)
    command_parser = parser._subparsers._group_actions[0].choices[args.command]
    if args.corefile:
        corefile = tmp_path / "Corefile"
        corefile.write_text(STOCK["kubeadm"].replace("/etc/resolv.conf", str(resolv)))
        args.corefile = str(corefile)
        options = cli.corefile_options(args, command_parser)[0]
        return options
    return cli.serve_options(args, cli.settings_from(args), command_parser)


@pytest.mark.parametrize("where", sorted(command_lines()))
def test_command_line_forwards_names_outside_the_cluster(where, tmp_path, monkeypatch):
    """A cluster switched to clusterdns keeps resolving external names: every command line forwards them."""
    options = serve_options_of(where, tmp_path, monkeypatch)
    forward = options.forward
    assert forward is not None, f"{where}: names outside the cluster would be REFUSED"
    if where.startswith("compose"):
        # Docker's embedded DNS: the containers' resolv.conf names it, a loopback address clusterdns
        # will not take from a file, so compose passes it explicitly.
        assert forward.upstreams == (("127.0.0.11", 53),)
    else:
        # The Deployment (kubeadm's `forward . /etc/resolv.conf`) and the image's default: the
        # nameservers of the resolv.conf in the pod, which dnsPolicy: Default makes the node's.
        assert forward.upstreams == (("192.0.2.53", 53), ("192.0.2.54", 53))
    assert options.loadbalance, f"{where}: A/AAAA rotation is on, as kubeadm's loadbalance"
    assert options.log_queries is None, f"{where}: no per-query log by default (kubeadm's Corefile has no log)"
    if where in ("Deployment args", "compose clusterdns"):
        # kubeadm's `cache 30`: forwarded answers, successes and denials, kept at most 30 s
        assert (forward.cache_max_ttl, forward.denial_max_ttl) == (30, 30), where
        assert forward.cache_size >= 9984  # CoreDNS cache's capacity per kind


def test_deployment_uses_the_nodes_resolv_conf():
    # dnsPolicy Default: the pod's /etc/resolv.conf is the node's, so `forward . /etc/resolv.conf`
    # goes to the node's resolvers; ClusterFirst would send clusterdns's own upstream queries to itself.
    assert pod_spec()["dnsPolicy"] == "Default"


def _answers(proc: subprocess.Popen, family, host: str, port: int, seconds: float = 20) -> bool:
    """Does the server at (host, port) answer a DNS query before it exits or time runs out?"""
    import socket
    import time

    from dnslib import DNSRecord

    query = DNSRecord.question("kubernetes.default.svc.cluster.local").pack()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"clusterdns exited with {proc.returncode}: {proc.stderr.read()}")
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            try:
                sock.sendto(query, (host, port))
                if sock.recv(4096)[:2] == query[:2]:
                    return True
            except OSError:  # not listening yet (refused) or no answer yet
                pass
    return False


def _free_port_on_both_families() -> int:
    import socket

    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4:
            s4.bind(("0.0.0.0", 0))
            port = s4.getsockname()[1]
        try:
            probes = []
            for family, host, kind in (
                (socket.AF_INET, "0.0.0.0", socket.SOCK_DGRAM), (socket.AF_INET, "0.0.0.0", socket.SOCK_STREAM),
                (socket.AF_INET6, "::", socket.SOCK_DGRAM), (socket.AF_INET6, "::", socket.SOCK_STREAM),
            ):
                sock = socket.socket(family, kind)
                probes.append(sock)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            for sock in probes:
                sock.close()
    pytest.skip("no port free on both 0.0.0.0 and ::")


def test_image_default_listen_pair_binds_together(tmp_path):
    """The image's CMD and the Deployment listen on 0.0.0.0:53 and [::]:53 at once."""
    import socket
    import sys

    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
    except OSError:
        pytest.skip("IPv6 sockets are not available here")
    port = _free_port_on_both_families()
    argv = [sys.executable, "-m", "clusterdns.cli", "serve", "--manifests", str(ROOT / "zones"),
            f"--listen=0.0.0.0:{port}", f"--listen=[::]:{port}", "--http=", "--no-forward"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert _answers(proc, socket.AF_INET, "127.0.0.1", port), "no answer on 127.0.0.1"
        assert _answers(proc, socket.AF_INET6, "::1", port), "no answer on ::1"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stderr.close()


# --------------------------------------------------------------------------- kubectl

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def run_kubectl(args: list[str], tmp_path: Path, check: bool = True) -> subprocess.CompletedProcess:
    # An empty kubeconfig and HOME: whatever the developer's kubectl points
    # at, these commands cannot reach it (and --local never tries).
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "no-kubeconfig"), "HOME": str(tmp_path)}
    proc = subprocess.run([KUBECTL, *args], capture_output=True, text=True, env=env, timeout=60)
    if check:
        assert proc.returncode == 0, f"kubectl {' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
    return proc


def json_stream(text: str) -> list[dict[str, Any]]:
    """kubectl -o json prints one object after another, not a List."""
    decoder, objects, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return objects
        obj, i = decoder.raw_decode(text, i)
        objects.append(obj)


@needs_kubectl
def test_kubectl_reads_every_manifest_offline(tmp_path):
    proc = run_kubectl(["label", "--local", "-f", str(DEPLOY), "-o", "json", "clusterdns.test/checked=yes"], tmp_path)
    got = sorted((o["kind"], o["metadata"]["name"], o["metadata"].get("namespace", "")) for o in json_stream(proc.stdout))
    want = sorted((d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", "")) for _, d in manifests())
    assert got == want


def typed_kubectl_command(doc: dict[str, Any]) -> list[str] | None:
    """An offline kubectl command that decodes ``doc`` into its Go type and prints it back."""
    kind = doc["kind"]
    if kind == "Deployment":
        return ["set", "env", "--local", "-o", "json", "CLUSTERDNS_KUBECTL_CHECK=1"]
    if kind == "Service":
        selector = ",".join(f"{k}={v}" for k, v in doc["spec"]["selector"].items())
        return ["set", "selector", "--local", "-o", "json", selector]
    if kind in ("ClusterRoleBinding", "RoleBinding"):
        return ["set", "subject", "--local", "-o", "json", "--serviceaccount=kube-system:kubectl-check"]
    return None


@needs_kubectl
@pytest.mark.parametrize("path,doc", manifests(), ids=lambda v: v.name if isinstance(v, Path) else v["kind"])
def test_kubectl_decodes_manifest_into_its_go_type(path, doc, tmp_path):
    single = tmp_path / "object.yaml"
    single.write_text(yaml.safe_dump(doc))
    command = typed_kubectl_command(doc)
    if command is None:
        # No offline command prints this kind back; `set env` still decodes
        # it into its Go type before refusing it for not being a workload.
        proc = run_kubectl(["set", "env", "--local", "-f", str(single), "-o", "json", "X=1"], tmp_path, check=False)
        assert "unable to decode" not in proc.stderr and "error parsing" not in proc.stderr, proc.stderr
        go_type = {"ServiceAccount": "*v1.ServiceAccount", "ClusterRole": "*v1.ClusterRole",
                   "PodDisruptionBudget": "*v1.PodDisruptionBudget"}[doc["kind"]]
        assert go_type in proc.stderr, proc.stderr
        return
    proc = run_kubectl([*command[:2], "-f", str(single), *command[2:]], tmp_path)
    (printed,) = json_stream(proc.stdout)
    # Every field we wrote survived decoding: an unknown (misspelt) field
    # would be missing, a wrongly typed one would have failed above.
    missing = []
    for leaf_path, value in leaves(doc):
        try:
            got = lookup(printed, leaf_path)
        except (KeyError, IndexError, TypeError):
            missing.append(leaf_path)
            continue
        if got != value and str(got) != str(value):
            missing.append((leaf_path, value, got))
    assert not missing, f"kubectl dropped or changed: {missing}"


@needs_kubectl
def test_kubectl_notices_a_misspelt_field(tmp_path):
    """The check above is not vacuous: a typo'd field is dropped by kubectl's decoder."""
    doc = json.loads(json.dumps(deployment()))
    c = doc["spec"]["template"]["spec"]["containers"][0]
    c["readinesProbe"] = c.pop("readinessProbe")
    single = tmp_path / "typo.yaml"
    single.write_text(yaml.safe_dump(doc))
    proc = run_kubectl(["set", "env", "--local", "-f", str(single), "-o", "json", "X=1"], tmp_path)
    (printed,) = json_stream(proc.stdout)
    printed_container = printed["spec"]["template"]["spec"]["containers"][0]
    assert "readinesProbe" not in printed_container and "readinessProbe" not in printed_container


# --------------------------------------------------------------------------- kubectl apply, against the fake API server


def printed_name(doc: dict[str, Any]) -> str:
    """How kubectl names an object in its output: ``deployment.apps/clusterdns``, ``service/kube-dns``."""
    group = doc["apiVersion"].rpartition("/")[0]
    return f"{doc['kind'].lower()}{'.' + group if group else ''}/{doc['metadata']['name']}"


def object_path(doc: dict[str, Any]) -> str:
    """The API path of the object ``doc`` describes (what kubectl GETs before applying it)."""
    from tests.fake_apiserver import RESOURCES

    (r,) = [r for r in RESOURCES.values() if r.kind == doc["kind"] and r.api_version == doc["apiVersion"]]
    prefix = f"/apis/{r.api_version}" if r.group else f"/api/{r.api_version}"
    scope = f"/namespaces/{doc['metadata']['namespace']}" if r.namespaced else ""
    return f"{prefix}{scope}/{r.plural}/{doc['metadata']['name']}"


def kubectl_apply_dry_run(directory: Path, server: Any, tmp_path: Path) -> subprocess.CompletedProcess:
    """``kubectl apply --dry-run=client --validate=false -f directory`` against ``server`` (a FakeApiServer).

    --validate=false: validation downloads the OpenAPI schema, which the fake
    does not serve.  Wrong field types are caught by the offline decoding tests above.
    """
    from tests.fake_apiserver import write_kubeconfig

    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)
    args = ["apply", "--dry-run=client", "--validate=false", "-f", str(directory),
            "--kubeconfig", str(kubeconfig), "--request-timeout=20s"]
    return run_kubectl(args, tmp_path, check=False)


@needs_kubectl
def test_kubectl_apply_dry_run_client_creates_every_object(fake_apiserver, tmp_path):
    """`kubectl apply --dry-run=client -f deploy/`: discovery maps every kind, every object would be created."""
    from tests.fake_apiserver import namespace

    fake_apiserver.add(namespace(NAMESPACE))  # there in every cluster; kubectl looks it up
    proc = kubectl_apply_dry_run(DEPLOY, fake_apiserver, tmp_path)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    # In file order, one line per document.
    assert proc.stdout.splitlines() == [f"{printed_name(doc)} created (dry run)" for _, doc in manifests()]
    # kubectl really asked the server about each object (and got 404: the create path) ...
    asked = {r.path for r in fake_apiserver.requests if r.method == "GET"}
    missing = [object_path(doc) for _, doc in manifests() if object_path(doc) not in asked]
    assert not missing, f"kubectl never asked for {missing}"
    # ... and, being a dry run, wrote nothing.
    assert [r for r in fake_apiserver.requests if r.method != "GET"] == []


@needs_kubectl
@pytest.mark.parametrize("field,value,error", [
    ("kind", "Deployement", 'no matches for kind "Deployement" in version "apps/v1"'),
    ("apiVersion", "apps/v1beta2", 'no matches for kind "Deployment" in version "apps/v1beta2"'),
])
def test_kubectl_apply_dry_run_client_rejects_an_unknown_kind(fake_apiserver, tmp_path, field, value, error):
    """The check above can fail: a kind the server does not serve stops the whole apply.

    (A wrongly typed field, such as ``replicas: "two"``, is *not* caught this way: with
    --validate=false kubectl sends the object as it is, and `created (dry run)` it says.)
    """
    from tests.fake_apiserver import namespace

    fake_apiserver.add(namespace(NAMESPACE))
    broken = tmp_path / "deploy"
    broken.mkdir()
    for path in manifest_files():
        shutil.copy(path, broken / path.name)
    doc = json.loads(json.dumps(deployment()))
    doc[field] = value
    (broken / file_of("Deployment", "clusterdns").name).write_text(yaml.safe_dump(doc))
    proc = kubectl_apply_dry_run(broken, fake_apiserver, tmp_path)
    assert proc.returncode != 0, proc.stdout
    assert error in proc.stderr, proc.stderr
    assert "deployment.apps/clusterdns created" not in proc.stdout
