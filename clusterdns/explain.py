"""``clusterdns resolve``, ``resolv-conf`` and ``env``: what a pod sees, step by step.

The data comes from manifests (``--manifests``, ``./zones`` by default), a
live cluster (``--kubeconfig``/``--context``: the same KubeSource as ``serve``,
synced once, then answered in-process), or, for ``resolve``, a running server
(``--server HOST:PORT``, asked over the network: its EDE reasons are shown).
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import socket
import sys
from pathlib import Path

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import yaml

from .app import ClusterDNS, load_manifests
from .kubelet import pod_resolv_conf, service_env
from .objects import ENDPOINT_SLICE, NAMESPACE, POD, SERVICE, ObjectError, Pod, PodDNSConfig, Service, read_dns_config
from .searchpath import ResolvConf, parse_resolv_conf
from .server import parse_listen
from .settings import Settings
from .stub import Ask, Reply, Walk, walk

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2
DEFAULT_MANIFESTS = "zones"


class InputError(Exception):
    """Bad input named in the message (a file, a pod, a type); exit 2."""


class NotInData(InputError):
    """What was asked for is not in the cluster data (a pod, the DNS Service); exit 1."""


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.command == "resolve":
            return resolve(args, settings)
        if args.command == "resolv-conf":
            return resolv_conf(args, settings)
        return env(args, settings)
    except InputError as exc:
        print(f"clusterdns {args.command}: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND if isinstance(exc, NotInData) else EXIT_USAGE
    except BrokenPipeError:  # `clusterdns env | head`: the reader stopped early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


# ----------------------------------------------------------------- data sources


def load(args: argparse.Namespace, settings: Settings, pods: bool = False) -> ClusterDNS:
    """The cluster from a live API (synced once) or from manifests."""
    if getattr(args, "kubeconfig", None) or getattr(args, "context", None):
        if args.manifests:
            raise InputError("--manifests and a live cluster (--kubeconfig, --context) are exclusive")
        kinds = [NAMESPACE, SERVICE, ENDPOINT_SLICE] + ([POD] if pods or settings.pods == "verified" else [])
        return asyncio.run(sync_live(settings, args.kubeconfig, args.context, kinds, args.sync_timeout))
    paths = args.manifests or [DEFAULT_MANIFESTS]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise InputError(f"no such file or directory: {', '.join(missing)}")
    dns_state, _ = load_manifests(paths, settings)
    return dns_state


async def sync_live(settings: Settings, kubeconfig, context, kinds, timeout: float, configuration=None) -> ClusterDNS:
    """List every kind once through the same KubeSource ``serve`` uses, then stop watching."""
    from .sources.kube import KubeConfigError, KubeSource

    state = ClusterDNS(settings, required_kinds=kinds)
    synced = asyncio.Event()

    def sink(events) -> None:
        state.sink(events)
        if state.synced:
            synced.set()

    source = KubeSource(sink, kubeconfig=kubeconfig, context=context, configuration=configuration, kinds=kinds)
    try:
        source.start()
    except KubeConfigError as exc:
        raise InputError(str(exc)) from exc
    try:
        await asyncio.wait_for(synced.wait(), timeout)
    except asyncio.TimeoutError:
        missing = ", ".join(sorted(state.required_kinds - state.cluster.synced))
        print(f"warning: not synced after {timeout:g}s (waiting for {missing}): misses answer SERVFAIL", file=sys.stderr)
    finally:
        await asyncio.to_thread(source.stop)
    return state


def in_process(state: ClusterDNS, payload: int) -> Ask:
    """Ask the zone through the same wire path the server uses (caches, truncation)."""

    def ask(name: str, qtype: str, tcp: bool, timeout: float) -> Reply:
        if state.zone.origin_for(name.lower()) is None:
            return Reply(dns.rcode.REFUSED, outside=True)
        query = dns.message.make_query(name, qtype, use_edns=0, payload=payload)
        data, _, _, _ = state.responder.respond(query.to_wire(), udp=not tcp)
        assert data is not None  # a query made by dnspython is never dropped
        return _reply(dns.message.from_wire(data))

    return ask


def over_network(host: str, port: int, payload: int) -> Ask:
    """Ask a running server with dnspython, as the pod's resolver would (UDP, TCP when asked)."""

    def ask(name: str, qtype: str, tcp: bool, timeout: float) -> Reply | None:
        query = dns.message.make_query(name, qtype, use_edns=0, payload=payload)
        try:
            if tcp:
                response = dns.query.tcp(query, host, port=port, timeout=timeout)
            else:
                # A connected socket hears the ICMP "port unreachable" of a port nothing listens on, so a wrong
                # --server is told at once instead of as a timeout of every try of every name.
                with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.setblocking(False)  # dnspython waits with select() on a socket it is given
                    sock.connect((host, port))
                    response = dns.query.udp(query, host, port=port, timeout=timeout, raise_on_truncation=False,
                                             sock=sock)
        except dns.exception.Timeout:
            return None
        except OSError as exc:
            raise InputError(f"cannot ask {host} port {port}: {exc.strerror or exc}") from exc
        return _reply(response)

    return ask


def _reply(message: dns.message.Message) -> Reply:
    answers = tuple(
        f"{dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}" for rrset in message.answer for rd in rrset
    )
    reasons = [(int(o.code), o.text or "") for o in message.options if o.otype == dns.edns.EDE]
    return Reply(
        message.rcode(),
        answers,
        truncated=bool(message.flags & dns.flags.TC),
        reason=reasons[0] if reasons else None,
    )


# ----------------------------------------------------------------- resolve


def resolve(args: argparse.Namespace, settings: Settings) -> int:
    qtype = (args.qtype or args.type or "").upper() or None
    if qtype is not None:
        try:
            dns.rdatatype.from_text(qtype)
        except dns.rdatatype.UnknownRdatatype:
            raise InputError(f"unknown query type {qtype!r}") from None
    conf_from_file = _read_resolv_conf(args.resolv_conf) if args.resolv_conf else None
    if args.server:
        try:
            host, port = parse_listen(args.server, "--server")
        except ValueError as exc:
            raise InputError(str(exc)) from None
        conf = conf_from_file or pod_resolv_conf(
            args.namespace, cluster_domain=settings.zone, cluster_dns=(host,)
        ).conf
        ask = over_network(host, port, _payload(conf))
        source = f"server {args.server}"
    else:
        state = load(args, settings)
        try:
            servers = cluster_dns(state, settings, args)
        except InputError:
            servers = ("127.0.0.1",)  # shown only: the walk is answered in-process
        conf = conf_from_file or pod_resolv_conf(args.namespace, cluster_domain=settings.zone, cluster_dns=servers).conf
        ask = in_process(state, _payload(conf))
        source = "the live cluster" if args.kubeconfig or args.context else "the manifests"
    result = walk(args.name, conf, ask, resolver=args.resolver, qtype=qtype)
    if args.json:
        print(json.dumps(walk_json(result, conf, source), indent=2))
    else:
        print("\n".join(walk_table(result, conf, source)))
    return EXIT_OK if result.winner else EXIT_NOT_FOUND


def _payload(conf: ResolvConf) -> int:
    """What the stub accepts over UDP: 512 bytes, or glibc's 1200 with ``options edns0``."""
    return 1200 if conf.has("edns0") else 512


def _read_resolv_conf(path: str) -> ResolvConf:
    try:
        return parse_resolv_conf(Path(path).read_text())
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None


def walk_table(result: Walk, conf: ResolvConf, source: str) -> list[str]:
    options = " ".join(f"{o}:{conf.number(o)}" for o in ("ndots", "attempts", "timeout"))
    extra = " ".join(o for o in conf.options if o.split(":")[0] not in ("ndots", "attempts", "timeout"))
    lines = [
        f"resolver {result.resolver}; search {' '.join(conf.search) or '(none)'}; {options}{' ' + extra if extra else ''}",
        f"{result.name!r} {result.why}; {result.sending}; answers from {source}",
        "",
    ]
    width = max([len(step.name) for step in result.steps] + [4])
    lines.append(f"  #  {'name':<{width}}  type  rcode     answers / reason")
    for number, step in enumerate(result.steps, start=1):
        for i, query in enumerate(step.queries):
            shown = ", ".join(query.answers) if query.answers else (query.reason or ("NODATA" if query.nodata else ""))
            if query.transport not in ("udp", "tcp") or query.tries > 1:
                shown += f"  [{query.transport}{f', {query.tries} tries' if query.tries > 1 else ''}]"
            head = f"{number:>3}  {step.name:<{width}}" if i == 0 else f"     {'':<{width}}"
            lines.append(f"{head}  {query.qtype:<5} {query.rcode:<9} {shown}".rstrip())
    count = result.query_count
    if result.winner:
        winner = result.steps[result.winner - 1].name
        lines.append(f"→ answered by #{result.winner} {winner} after {count} quer{'y' if count == 1 else 'ies'}")
    elif result.steps and result.steps[-1].outcome == "stop":
        lines.append(f"→ the resolver gives up at #{len(result.steps)} after {count} queries: the lookup fails")
    else:
        lines.append(f"→ no candidate answered after {count} queries: the lookup fails")
    return lines


def walk_json(result: Walk, conf: ResolvConf, source: str) -> dict:
    return {
        "name": result.name,
        "types": list(result.qtypes),
        "resolver": result.resolver,
        "source": source,
        "resolv_conf": {"search": list(conf.search), "nameservers": list(conf.nameservers), "options": list(conf.options)},
        "rule": result.why,
        "sending": result.sending,
        "candidates": [
            {
                "name": step.name,
                "outcome": step.outcome,
                "queries": [
                    {
                        "type": q.qtype,
                        "rcode": q.rcode,
                        "answers": list(q.answers),
                        "reason": q.reason or None,
                        "reason_code": q.reason_code,
                        "transport": q.transport,
                        "tries": q.tries,
                    }
                    for q in step.queries
                ],
            }
            for step in result.steps
        ],
        "answered_by": result.winner,
        "queries": result.query_count,
    }


# ----------------------------------------------------------------- resolv-conf and env


def cluster_dns(state: ClusterDNS, settings: Settings, args: argparse.Namespace) -> tuple[str, ...]:
    """kubelet's --cluster-dns: given, or the kube-dns Service's cluster IP(s) in the data."""
    if getattr(args, "cluster_dns", None):
        return tuple(args.cluster_dns.split(","))
    service = state.cluster.service(settings.dns_service)
    if service is None or not service.cluster_ips:
        namespace, name = settings.dns_service
        raise NotInData(
            f"no Service {namespace}/{name} with a cluster IP in the data: give the cluster DNS address with --cluster-dns IP"
        )
    return service.cluster_ips[:1]  # kubelet's clusterDNS is usually the one primary IP


def resolv_conf(args: argparse.Namespace, settings: Settings) -> int:
    state = load(args, settings, pods=bool(args.pod))
    namespace, policy, host_network, config = args.namespace, args.dns_policy, False, None
    if args.pod:
        pod = _pod(state, args.pod)
        namespace, host_network, config = pod.namespace, pod.host_network, pod.dns_config
        policy = args.dns_policy or pod.dns_policy
    if args.dns_config:
        config = _read_dns_config(args.dns_config)
    host = _read_resolv_conf(args.host_resolv_conf) if args.host_resolv_conf else None
    policy = policy or "ClusterFirst"
    servers = cluster_dns(state, settings, args) if policy in ("ClusterFirst", "ClusterFirstWithHostNet") else ()
    result = pod_resolv_conf(
        namespace, cluster_domain=settings.zone, cluster_dns=servers, policy=policy,
        host_network=host_network, host=host, dns_config=config,
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    sys.stdout.write(result.conf.render())
    return EXIT_OK


def env(args: argparse.Namespace, settings: Settings) -> int:
    state = load(args, settings, pods=bool(args.pod))
    namespace, links = args.namespace, True
    if args.pod:
        pod = _pod(state, args.pod)
        namespace, links = pod.namespace, pod.enable_service_links
    services = [obj for obj in state.cluster.objects.values() if isinstance(obj, Service)]
    _warn_unknown_namespace(state, namespace)
    variables = service_env(services, namespace, links)
    if not links:
        print(f"# enableServiceLinks: false: only the master services of 'default' ({len(variables)} variables)")
    for name, value in variables.items():
        print(f"{name}={value}")
    return EXIT_OK


def _warn_unknown_namespace(state: ClusterDNS, namespace: str) -> None:
    """A namespace nothing in the data lives in is most likely a typo: say so (the variables still print)."""
    known = {key[1] for key in state.cluster.objects if key[1]} | {
        key[2] for key in state.cluster.objects if key[0] == NAMESPACE}
    if namespace in known:
        return
    close = difflib.get_close_matches(namespace, sorted(known), n=1, cutoff=0.75)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    print(f'warning: no namespace "{namespace}" in the data{hint}', file=sys.stderr)


def _pod(state: ClusterDNS, ref: str) -> Pod:
    namespace, sep, name = ref.partition("/")
    if not sep or not namespace or not name:
        raise InputError(f"--pod {ref!r}: expected NAMESPACE/NAME")
    pod = state.cluster.get(POD, namespace, name)
    if not isinstance(pod, Pod):
        raise NotInData(f"no Pod {namespace}/{name} in the data")
    return pod


def _read_dns_config(path: str) -> PodDNSConfig:
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not YAML: {exc}") from None
    if isinstance(doc, dict) and "dnsConfig" in doc:
        doc = doc["dnsConfig"]  # a pod spec fragment
    try:
        return read_dns_config(doc, "dnsConfig")
    except ObjectError as exc:
        raise InputError(f"{path}: {exc.field}: {exc.message}") from None

