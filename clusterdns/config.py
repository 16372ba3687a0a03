"""A Corefile → one settings value (:class:`Config`), before anything starts.

:func:`load` reads the server blocks (:mod:`clusterdns.corefile`) and gives
each plugin CoreDNS's meaning in clusterdns's terms: listeners, the cluster
zone and its source, HTTP ports, hosts entries, rewrites, reload.  It checks
everything and reports *every* error at once, each naming file, line and
plugin; a plugin or option clusterdns does not have is an error, never
ignored.  Pure: it reads the Corefile (and what it imports), nothing else.

clusterdns runs one cluster zone behind one set of listeners, so the shapes it
takes are: one server block holding ``kubernetes`` (the cluster block), plus
blocks for other zones that only forward (CoreDNS's stub domains), on the same
ports.  Anything a block says that would differ per block in CoreDNS (its own
cache, log or listeners) must agree with the cluster block's, or it is an
error saying so.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from .acl import parse_networks
from .corefile import CorefileError, Directive, ServerBlock, Token, parse_file
from .forward.resolvconf import ResolvConfError, upstreams_from_file
from .forward.settings import ForwardSettings, Stub, parse_address
from .hosts import HostsSettings
from .names import is_ip
from .rewrite import Rewrite, RewriteError, parse_rewrite
from .serving import ServeOptions
from .settings import POD_MODES, REVERSE_ZONES, absolute

SUPPORTED = (
    "autopath", "bind", "cache", "errors", "forward", "health", "hosts", "kubernetes", "loadbalance", "log", "loop",
    "prometheus", "ready", "reload", "rewrite", "transfer",
)
DEFAULT_PORT = 53
HEALTH_ADDRESS, READY_ADDRESS, PROMETHEUS_ADDRESS = ":8080", ":8181", "localhost:9153"  # the plugins' defaults
ALL_IPV4 = "0.0.0.0"
ALL_HOSTS = ("0.0.0.0", "::")  # a key with no bind: every interface, both families, as CoreDNS's Go listener


class ConfigErrors(Exception):
    """Every problem found, each ``FILE:LINE: message``."""

    def __init__(self, errors: list[CorefileError]):
        super().__init__("\n".join(map(str, errors)))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class ServerKey:
    zone: str  # absolute, lower case; "." for the root
    port: int
    token: Token


@dataclass(frozen=True, slots=True)
class Forward:
    """One ``forward FROM TO...`` block, read and checked."""

    zone: str
    upstreams: tuple[tuple[str, int], ...]
    resolv_conf: str | None  # TO was a resolv.conf path (kubeadm: /etc/resolv.conf)
    policy: str = "random"
    max_concurrent: int = 0  # 0: no limit (CoreDNS's default)
    force_tcp: bool = False
    prefer_udp: bool = False
    expire: float = 10.0
    max_fails: int = 2
    health_check: float = 0.5
    except_zones: tuple[str, ...] = ()
    where: str = ""


@dataclass(frozen=True, slots=True)
class Cache:
    """``cache [TTL] [ZONES] { ... }``: the forward cache's bounds."""

    max_ttl: int = 3600
    success_size: int = 9984  # CoreDNS's default capacity
    denial_size: int = 9984
    denial_max_ttl: int = 1800
    min_ttl: int = 5
    denial_min_ttl: int = 5
    prefetch: bool = False
    serve_stale: float = 0.0
    zones: tuple[str, ...] = (".",)
    disabled: tuple = ()  # (directive, zone) of disable success|denial ZONES, checked against the cluster zones


@dataclass(frozen=True, slots=True)
class LogPlugin:
    classes: frozenset[str] = frozenset({"all"})
    names: tuple[str, ...] = (".",)
    format: str | None = None


@dataclass
class Config:
    """What a Corefile asks for, in clusterdns's terms."""

    options: ServeOptions
    files: tuple[str, ...]  # the Corefile and every file it imported (reload watches them)
    path: str = ""  # the Corefile itself
    forwards: tuple[Forward, ...] = ()  # the cluster block's first, then stub blocks'
    cache: Cache | None = None
    query_log: LogPlugin | None = None
    loadbalance: bool = False
    loop: bool = False
    rewrites: tuple[Rewrite, ...] = ()
    reload: tuple[float, float] | None = None  # (interval, jitter) seconds
    errors_plugin: bool = False
    kube_fallthrough: tuple[str, ...] | None = None  # kubernetes { fallthrough ZONES }: misses there go on
    notes: list[str] = field(default_factory=list)  # approximations worth telling


# ----------------------------------------------------------------------------- entry points


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """The Config of the Corefile at ``path``; raises :class:`ConfigErrors` with every problem."""
    try:
        blocks = parse_file(path, env)
    except CorefileError as exc:
        raise ConfigErrors([exc]) from None
    return from_blocks(blocks, str(path))


def from_blocks(blocks: list[ServerBlock], main_file: str) -> Config:
    reader = _Reader()
    config = reader.read(blocks, main_file)
    if reader.errors:  # in the order of the text, whichever check found them
        raise ConfigErrors(sorted(reader.errors, key=lambda e: (e.file != main_file, e.file, e.line)))
    return config


def describe(config: Config) -> list[str]:
    """What ``check --corefile`` prints: the settings that result, one fact a line."""
    options, settings = config.options, config.options.settings
    lines = ["listeners:"]
    lines += [f"  dns  {_addresses([a])} (UDP and TCP)" for a in options.listen]
    for host, port, paths in options.http_listeners:
        lines.append(f"  http {_addresses([(host, port)])} {' '.join(sorted(paths))}")
    zones = [settings.zone, *(REVERSE_ZONES if settings.reverse else ())]
    lines.append(f"zones: {' '.join(zones)} (ttl {settings.ttl}, pods {settings.pods}"
                 + (", endpoint_pod_names" if settings.endpoint_pod_names else "")
                 + (", noendpoints" if settings.noendpoints else "")
                 + (", ignore empty_service" if settings.ignore_empty_service else "")
                 + (", autopath" if settings.autopath else "") + ")")
    if config.kube_fallthrough:
        lines.append(f"  fallthrough: {' '.join(config.kube_fallthrough)}")
    source = (f"kubeconfig {options.kubeconfig}" + (f" context {options.context}" if options.context else "")
              if options.kubeconfig else "in-cluster credentials (or $KUBECONFIG)")
    if options.kube_endpoint:
        source += f", endpoint {options.kube_endpoint}"
    lines.append(f"source: the Kubernetes API, {source}")
    filters = [f"namespaces {','.join(sorted(options.namespaces))}" if options.namespaces else "",
               f"labels {options.labels}" if options.labels else "",
               f"namespace_labels {options.namespace_labels}" if options.namespace_labels else ""]
    lines.append("filters: " + ("; ".join(f for f in filters if f) or "none"))
    if not config.forwards:
        lines.append("upstreams: none (names outside the zones are REFUSED)")
    for forward in config.forwards:
        to = [format_address(a) for a in forward.upstreams] + ([f"nameservers of {forward.resolv_conf}"] if forward.resolv_conf else [])
        extra = f", except {' '.join(forward.except_zones)}" if forward.except_zones else ""
        limit = f", max_concurrent {forward.max_concurrent}" if forward.max_concurrent else ""
        lines.append(f"upstreams for {forward.zone}: {', '.join(to)} (policy {forward.policy}{limit}{extra})")
    cache = config.cache
    lines.append("cache: " + (f"success {cache.success_size} up to {cache.max_ttl}s, denial {cache.denial_size} up to "
                              f"{cache.denial_max_ttl}s" + (f", serve_stale {cache.serve_stale:g}s" if cache.serve_stale else "")
                              if cache else "none"))
    hosts = options.hosts
    if hosts is not None:
        lines.append(f"hosts: {', '.join(hosts.files) or 'no file'}" + (f" + {len(hosts.inline)} inline" if hosts.inline else "")
                     + f" (ttl {hosts.ttl}" + (", fallthrough" if hosts.fallthrough else "")
                     + ("" if hosts.reverse else ", no_reverse") + ")")
    if options.transfer_to is not None:
        lines.append(f"transfer to: {', '.join(map(str, options.transfer_to))} (AXFR over TCP)")
    for rule in config.rewrites:
        lines.append(f"rewrite: name {rule.kind} {rule.source} {rule.target}" + (f" (answer {rule.answer})" if rule.answer else ""))
    plugins = [name for name, on in (("errors", config.errors_plugin), ("loop", config.loop),
                                      ("loadbalance", config.loadbalance)) if on]
    if config.query_log:
        plugins.append(f"log ({', '.join(sorted(config.query_log.classes))})")
    if config.reload:
        plugins.append(f"reload every {config.reload[0]:g}s")
    if options.lameduck:
        plugins.append(f"lameduck {options.lameduck:g}s")
    lines.append("also: " + (", ".join(plugins) or "nothing"))
    lines += [f"note: {note}" for note in config.notes]
    return lines


def serve_options(config: Config) -> ServeOptions:
    """The ServeOptions that run this Corefile; reads a forward's resolv.conf (ConfigErrors if it cannot)."""
    return replace(
        config.options, loadbalance=config.loadbalance, rewrites=config.rewrites,
        log_queries=config.query_log.classes if config.query_log else None,
        forward=forward_settings(config),
    )


def forward_settings(config: Config) -> ForwardSettings | None:
    """The forward blocks and the cache as the forwarder's one settings value (None: no forward at all)."""
    if not config.forwards:
        return None
    default: tuple[tuple[str, int], ...] = ()
    stubs, errors = [], []
    for forward in config.forwards:
        upstreams = forward.upstreams
        if forward.resolv_conf is not None:
            try:
                upstreams += upstreams_from_file(forward.resolv_conf)
            except ResolvConfError as exc:
                file, _, line = forward.where.rpartition(":")
                errors.append(CorefileError(file, int(line), f"forward {forward.zone} {str(exc).removeprefix('--upstream ')}"))
                continue
        if forward.zone == ".":
            default = upstreams
        else:
            stubs.append(Stub(forward.zone, upstreams))
    if errors:
        raise ConfigErrors(errors)
    main = next((f for f in config.forwards if f.zone == "."), config.forwards[0])
    cache = config.cache or Cache()
    return ForwardSettings(
        upstreams=default,
        stubs=tuple(stubs),
        policy=main.policy,
        max_concurrent=main.max_concurrent,  # 0: no limit, CoreDNS's default
        cache_size=max(cache.success_size, cache.denial_size),
        cache_max_ttl=cache.max_ttl,
        denial_max_ttl=cache.denial_max_ttl,
        serve_stale=cache.serve_stale,
        health_check=main.health_check,
        tcp_idle=main.expire,
        loop_check=config.loop,
    )


def format_address(address: tuple[str, int]) -> str:
    return _addresses([address])


def relocate(options: ServeOptions, moves: Mapping[str, str]) -> ServeOptions:
    """Move listeners without editing the Corefile: ``{":53": "127.0.0.1:23053", ":8080": "127.0.0.1:0"}``.

    Keys are addresses as the Corefile writes them (``:53`` for every
    interface, ``127.0.0.1:9153``); the special key ``"*"`` moves every
    listener's host to the given host, keeping (or zeroing, with ``HOST:0``)
    its port.  For trying a cluster's Corefile on a laptop, and for tests.
    """

    def move(host: str, port: int) -> tuple[str, int]:
        for key in (f"{'' if host in ALL_HOSTS + ('',) else host}:{port}", f"{host}:{port}", f"[{host}]:{port}"):
            if key in moves:
                new_host, new_port = _address(moves[key])
                return new_host, port if new_port is None else new_port
        if "*" in moves:
            new_host, new_port = _address(moves["*"])
            return new_host, port if new_port is None else new_port
        return host, port

    return replace(
        options,
        listen=list(dict.fromkeys(move(*address) for address in options.listen)),  # both families may land on one
        http=move(*options.http) if options.http else None,
        http_listeners=tuple((*move(host, port), paths) for host, port, paths in options.http_listeners),
    )


def _address(text: str) -> tuple[str, int | None]:
    if ":" not in text or text.endswith("]"):
        return text.strip("[]") or ALL_IPV4, None  # a host alone
    host, _, port = text.rpartition(":")
    return host.strip("[]") or ALL_IPV4, int(port) if port else None


# ----------------------------------------------------------------------------- the reader


class _Reader:
    def __init__(self) -> None:
        self.errors: list[CorefileError] = []
        self.notes: list[str] = []

    def error(self, at: Directive | Token, message: str) -> None:
        token = at.token if isinstance(at, Directive) else at
        self.errors.append(CorefileError(token.file, token.line, message))

    # -- blocks

    def read(self, blocks: list[ServerBlock], main_file: str) -> Config:
        files = {main_file} | {t.file for b in blocks for t in _tokens_of(b)}
        config = Config(options=ServeOptions(manifests=None, http=None), files=tuple(sorted(files)), path=main_file)
        if not blocks:
            self.errors.append(CorefileError(main_file, 1, "no server blocks: nothing to serve"))
            return config
        keyed = [(block, self.keys(block)) for block in blocks]
        cluster = [(b, k) for b, k in keyed if any(d.name == "kubernetes" for d in b.directives)]
        for block, _ in keyed:
            for directive in block.directives:
                if directive.name not in SUPPORTED:
                    self.error(directive, f'plugin "{directive.name}" is not supported by clusterdns '
                                          f'(supported: {", ".join(SUPPORTED)})')
        if not cluster:
            self.errors.append(CorefileError(blocks[0].keys[0].file, blocks[0].keys[0].line,
                                             "no server block has the kubernetes plugin: clusterdns serves a cluster's names"))
            return config
        main, main_keys = cluster[0]
        for other, _ in cluster[1:]:
            where = next(d for d in other.directives if d.name == "kubernetes")
            self.error(where, f"a second kubernetes plugin (the first is in {main.label} at {main.where}): "
                              "clusterdns serves one cluster")
        listen = self.listeners(main, main_keys)
        self.cluster_block(main, main_keys, config)
        config.options.listen = listen
        for block, keys in keyed:
            if block is not main and block not in [b for b, _ in cluster[1:]]:
                self.stub_block(block, keys, listen, config)
        self.forwarding_notes(config, main)
        config.notes[:0] = self.notes
        return config

    def forwarding_notes(self, config: Config, main: ServerBlock) -> None:
        defaults = [f for f in config.forwards if f.zone == "."]
        for extra in defaults[1:]:
            file, _, line = extra.where.rpartition(":")
            self.errors.append(CorefileError(file, int(line), f"a second forward . (the first is at {defaults[0].where})"))
        if not config.forwards:
            return
        cache = config.cache
        if cache is None:
            self.notes.append(f"{main.label}: forward without cache: clusterdns still keeps forwarded answers "
                              "for their TTL (its forwarder always caches)")
        else:
            if cache.success_size != cache.denial_size:
                self.notes.append(f"cache: success {cache.success_size} and denial {cache.denial_size} entries: "
                                  f"clusterdns bounds each by {max(cache.success_size, cache.denial_size)}")
            if cache.zones != (".",):
                self.notes.append(f"cache {' '.join(cache.zones)}: clusterdns's cache keeps every forwarded answer, "
                                  "not only those zones' (cluster answers are never TTL-cached)")
            if (cache.min_ttl, cache.denial_min_ttl) != (5, 5):
                self.notes.append("cache: a minimum TTL is not applied by clusterdns (records keep their own)")
        fallthrough = config.kube_fallthrough or ()
        cluster_zone = config.options.settings.zone
        if "." in fallthrough or any(cluster_zone == z or cluster_zone.endswith("." + z) for z in fallthrough):
            self.notes.append(f"kubernetes fallthrough {' '.join(fallthrough)}: names in {cluster_zone} never go "
                              "upstream in clusterdns (a miss there is NXDOMAIN)")
        if not set(REVERSE_ZONES) <= set(fallthrough) and "." not in fallthrough:
            self.notes.append("kubernetes without fallthrough in-addr.arpa ip6.arpa: clusterdns still forwards "
                              "reverse names the cluster does not own, as the stock Corefiles ask")

    def keys(self, block: ServerBlock) -> list[ServerKey]:
        keys = []
        for token in block.keys:
            text = token.text
            scheme, sep, rest = text.partition("://")
            if not sep:
                scheme, rest = "dns", text
            if scheme != "dns":
                self.error(token, f"{scheme}:// servers are not supported by clusterdns (only dns://, plain UDP and TCP)")
                continue
            zone, port = rest, DEFAULT_PORT
            head, colon, tail = rest.rpartition(":")
            if colon and tail.isdigit() and "]" not in tail:
                zone, port = head, int(tail)
            if not 0 <= port <= 65535:
                self.error(token, f"server key {text}: port {port} is out of range")
                continue
            try:
                keys.append(ServerKey(_zone(zone or "."), port, token))
            except ValueError as exc:
                self.error(token, f"server key {text}: {exc}")
        return keys

    def listeners(self, block: ServerBlock, keys: list[ServerKey]) -> list[tuple[str, int]]:
        hosts: list[str] = []
        for directive in block.directives:
            if directive.name == "bind":
                if directive.block is not None:
                    self.error(directive, "bind: the except block is not supported by clusterdns")
                if not directive.args:
                    self.error(directive, "bind needs at least one address")
                for arg in directive.args:
                    try:
                        hosts.append(str(ipaddress.ip_address(arg.text)))
                    except ValueError:
                        self.error(arg, f"bind {arg.text}: clusterdns binds IP addresses, not interface names")
        ports = sorted({k.port for k in keys})
        return [(host, port) for port in ports for host in (hosts or ALL_HOSTS)]

    # -- the cluster block

    def cluster_block(self, block: ServerBlock, keys: list[ServerKey], config: Config) -> None:
        options = config.options
        seen: dict[str, Directive] = {}
        for directive in block.directives:
            name = directive.name
            if name in seen and name not in ("forward", "rewrite", "bind", "hosts"):
                self.error(directive, f"{name} appears twice in this server block (first at {seen[name].where})")
                continue
            seen.setdefault(name, directive)
            handler = getattr(self, f"plugin_{name}", None)
            if handler is not None:
                handler(directive, config, keys)
        if config.cache is not None:
            served = options.settings.zones
            for line, zone in config.cache.disabled:
                if not any(zone == z or zone.endswith("." + z) for z in served):
                    self.error(line, f"cache disable {line.values[0]} {zone}: clusterdns can turn its cache off only "
                                     f"for the cluster zones ({', '.join(served)}), whose answers it never TTL-caches")
        # After the block: these read the kubernetes plugin's settings, which may come later in it.
        if "autopath" in seen:
            self.autopath(seen["autopath"], config)
        if "transfer" in seen:
            self.transfer(seen["transfer"], config)
        if "hosts" in seen:
            hosts = [d for d in block.directives if d.name == "hosts"]
            for extra in hosts[1:]:
                self.error(extra, f"a second hosts plugin (the first is at {hosts[0].where}): clusterdns has one")

    # -- each plugin: (directive, config, block keys)

    def plugin_errors(self, d: Directive, config: Config, keys) -> None:
        self.no_args(d)
        for line in d.block or ():
            if line.name != "consolidate":
                self.error(line, f'errors: option "{line.name}" is not supported by clusterdns (supported: consolidate)')
            else:  # clusterdns always logs a repeating error once per burst, whatever the pattern
                self.notes.append(f"{line.where}: errors consolidate: clusterdns reports every repeating error "
                                  "once per 30 s burst with a count, whatever the pattern")
        config.errors_plugin = True

    def plugin_health(self, d: Directive, config: Config, keys) -> None:
        address = self.address(d, HEALTH_ADDRESS)
        for line in d.block or ():
            if line.name == "lameduck" and len(line.args) == 1:
                config.options.lameduck = self.duration(line.args[0])
            else:
                self.error(line, f'health: option "{line.name}" is not supported (supported: lameduck DURATION)')
        self.http(config, address, "/health")

    def plugin_ready(self, d: Directive, config: Config, keys) -> None:
        self.no_block(d)
        self.http(config, self.address(d, READY_ADDRESS), "/ready")

    def plugin_prometheus(self, d: Directive, config: Config, keys) -> None:
        self.no_block(d)
        self.http(config, self.address(d, PROMETHEUS_ADDRESS), "/metrics")

    def plugin_bind(self, d: Directive, config: Config, keys) -> None:
        pass  # read by listeners()

    def plugin_loop(self, d: Directive, config: Config, keys) -> None:
        self.no_args(d)
        self.no_block(d)
        config.loop = True

    def plugin_loadbalance(self, d: Directive, config: Config, keys) -> None:
        self.no_block(d)
        if d.values not in ([], ["round_robin"]):
            self.error(d, f"loadbalance {' '.join(d.values)}: clusterdns has round_robin only")
        config.loadbalance = True

    def plugin_reload(self, d: Directive, config: Config, keys) -> None:
        self.no_block(d)
        values = d.args
        if len(values) > 2:
            self.error(d, "reload takes at most INTERVAL and JITTER")
            return
        interval = self.duration(values[0]) if values else 30.0
        jitter = self.duration(values[1]) if len(values) > 1 else 15.0
        if interval < 2:
            self.error(d, "reload: the interval must be at least 2s, as CoreDNS requires")
        elif jitter > interval / 2:
            self.error(d, "reload: the jitter must be at most half the interval, as CoreDNS requires")
        config.reload = (interval, jitter)

    def plugin_log(self, d: Directive, config: Config, keys) -> None:
        names, fmt = [], None
        for arg in d.args:
            if fmt is None and ("{" in arg.text or arg.quoted):
                fmt = arg.text
            else:
                names.append(self.zone_of(arg))
        classes: set[str] = set()
        for line in d.block or ():
            if line.name != "class" or not line.args:
                self.error(line, f'log: option "{line.name}" is not supported (supported: class CLASSES)')
                continue
            for arg in line.args:
                if arg.text not in ("all", "success", "denial", "error"):
                    self.error(arg, f"log class {arg.text}: expected all, success, denial or error")
                classes.add(arg.text)
        if any(name != "." for name in names):
            self.error(d, f"log {' '.join(names)}: clusterdns logs the queries of every zone (log or log . only)")
        if fmt not in (None, "{common}"):
            self.error(d, f"log format {fmt}: clusterdns writes CoreDNS's common format only")
        config.query_log = LogPlugin(frozenset(classes or {"all"}), tuple(names) or (".",), fmt)

    def plugin_rewrite(self, d: Directive, config: Config, keys) -> None:
        self.no_block(d)
        try:
            config.rewrites += (parse_rewrite(d.values),)
        except RewriteError as exc:
            self.error(d, f"rewrite: {exc}")

    def plugin_kubernetes(self, d: Directive, config: Config, keys: list[ServerKey]) -> None:
        options = config.options
        zones = [self.zone_of(a) for a in d.args] or [k.zone for k in keys]
        cluster = [z for z in zones if z not in REVERSE_ZONES and not z.endswith(REVERSE_ZONES)]
        reverse = [z for z in zones if z in REVERSE_ZONES or z.endswith(REVERSE_ZONES)]
        settings = options.settings
        if len(cluster) != 1:
            self.error(d, f"kubernetes: clusterdns serves exactly one cluster domain, got {', '.join(cluster) or 'none'}")
        else:
            settings = replace(settings, zone=cluster[0])
        partial = [z for z in reverse if z not in REVERSE_ZONES]
        if partial:
            self.error(d, f"kubernetes: reverse zones must be whole in-addr.arpa / ip6.arpa in clusterdns, not {', '.join(partial)}")
        if reverse and set(reverse) != set(REVERSE_ZONES):
            self.error(d, "kubernetes: clusterdns serves in-addr.arpa and ip6.arpa together or neither")
        settings = replace(settings, reverse=bool(reverse))
        for key in keys:
            if key.zone != "." and not any(z == key.zone or z.endswith("." + key.zone) for z in zones):
                self.error(key.token, f"server key {key.token.text}: zone {key.zone} holds none of the kubernetes zones")
        fallthrough: tuple[str, ...] | None = None
        for line in d.block or ():
            name, values = line.name, line.values
            if name == "kubeconfig" and 1 <= len(values) <= 2:
                options.kubeconfig = values[0]
                options.context = values[1] if len(values) == 2 else None
            elif name == "endpoint" and len(values) == 1:
                config.notes.append(f"{line.where}: endpoint {values[0]}: the API server is reached without "
                                    "credentials unless kubeconfig is given too")
                options.kube_endpoint = values[0]
            elif name == "namespaces" and values:
                options.namespaces = frozenset(values)
            elif name == "labels" and values:
                options.labels = " ".join(values)
            elif name == "namespace_labels" and values:
                options.namespace_labels = " ".join(values)
            elif name == "pods" and len(values) == 1 and values[0] in POD_MODES:
                settings = replace(settings, pods=values[0])
            elif name == "endpoint_pod_names" and not values:
                settings = replace(settings, endpoint_pod_names=True)
            elif name == "ttl" and len(values) == 1 and values[0].isdigit() and int(values[0]) <= 3600:
                settings = replace(settings, ttl=int(values[0]))
            elif name == "noendpoints" and not values:
                settings = replace(settings, noendpoints=True)
            elif name == "fallthrough":
                fallthrough = tuple(self.zone_of(a) for a in line.args) or (".",)
            elif name == "ignore" and values == ["empty_service"]:
                settings = replace(settings, ignore_empty_service=True)
            else:
                self.error(line, _option_error("kubernetes", line, KUBERNETES_OPTIONS))
        options.settings = settings
        config.kube_fallthrough = fallthrough

    def plugin_hosts(self, d: Directive, config: Config, keys) -> None:
        files = [d.args[0].text] if d.args else ["/etc/hosts"]  # the plugin's default file
        zones = [self.zone_of(a) for a in d.args[1:]]
        inline, ttl, reload, reverse, fallthrough = [], 3600, 5.0, True, False
        fall_zones: tuple[str, ...] = ()
        for line in d.block or ():
            name, values = line.name, line.values
            if name == "ttl" and len(values) == 1 and values[0].isdigit():
                ttl = int(values[0])
            elif name == "reload" and len(values) == 1:
                reload = self.duration(line.args[0])
            elif name == "no_reverse" and not values:
                reverse = False
            elif name == "fallthrough":
                fallthrough, fall_zones = True, tuple(self.zone_of(a) for a in line.args)
            elif is_ip(name):
                inline.append(" ".join([name, *values]))
            else:
                self.error(line, _option_error("hosts", line, HOSTS_OPTIONS))
        config.options.hosts = HostsSettings(
            files=tuple(files), inline=tuple(inline), zones=tuple(zones) or (".",), ttl=ttl,
            reverse=reverse, fallthrough=fallthrough, fallthrough_zones=fall_zones, reload=reload,
        )

    def autopath(self, d: Directive, config: Config) -> None:
        """``autopath @kubernetes``: the search walk done server-side for queries from known pods (--autopath)."""
        self.no_block(d)
        if [a.text for a in d.args] != ["@kubernetes"]:
            self.error(d, "autopath: clusterdns takes the search path from the kubernetes plugin only "
                          "(autopath @kubernetes), not from a resolv.conf")
            return
        settings = config.options.settings
        if settings.pods != "verified":
            # CoreDNS quietly does nothing then; a setting that does nothing is an error here.
            self.error(d, "autopath @kubernetes needs pods verified in the kubernetes plugin: the server finds "
                          "the asking pod by its address among known pods")
            return
        config.options.settings = replace(settings, autopath=True)

    def transfer(self, d: Directive, config: Config) -> None:
        """``transfer [ZONES] { to ADDRESS... }``: who may AXFR the cluster zones (--transfer-to)."""
        served = config.options.settings.zones
        for zone in (self.zone_of(a) for a in d.args):
            if zone not in served:
                self.error(d, f"transfer {zone}: clusterdns transfers only the zones it serves")
        networks: list[str] = []
        for line in d.block or ():
            if line.name != "to" or not line.values:
                self.error(line, _option_error("transfer", line, ("to ADDRESS...",)))
                continue
            for value in line.values:
                host, port = _host_port(value)
                if host and port.isdigit():  # an address to NOTIFY in CoreDNS; clusterdns sends none
                    self.notes.append(f"{line.where}: transfer to {value}: clusterdns sends no NOTIFY; "
                                      f"{host} may transfer")
                    value = host
                networks += ["0.0.0.0/0", "::/0"] if value == "*" else [value.strip("[]")]
        if not networks:
            self.error(d, "transfer: no \"to ADDRESS...\" in its block: nobody could transfer")
            return
        try:
            config.options.transfer_to = parse_networks(",".join(networks), "transfer to")
        except ValueError as exc:
            self.error(d, str(exc))

    def plugin_forward(self, d: Directive, config: Config, keys) -> None:
        forward = self.forward(d)
        if forward is not None:
            config.forwards += (forward,)

    def plugin_cache(self, d: Directive, config: Config, keys) -> None:
        config.cache = self.cache(d)

    # -- stub blocks

    def stub_block(self, block: ServerBlock, keys: list[ServerKey], listen, config: Config) -> None:
        label = f"server block {block.label} ({block.where})"
        own = self.listeners(block, keys)
        if own != listen:
            self.error(block.keys[0], f"{label} listens on {_addresses(own)}, the kubernetes "
                                      f"block on {_addresses(listen)}: clusterdns answers every zone on the same listeners")
        forwards = [d for d in block.directives if d.name == "forward"]
        if not forwards:
            self.error(block.keys[0], f"{label} has no forward: clusterdns serves other zones only by forwarding them")
        for directive in block.directives:
            name = directive.name
            if name == "forward":
                forward = self.forward(directive)
                if forward is None:
                    continue
                for key in keys:
                    if forward.zone != "." and forward.zone != key.zone:
                        self.error(directive, f"forward {forward.zone} in {label}: only . or the block's own zone")
                    else:
                        config.forwards += (replace(forward, zone=key.zone),)
            elif name == "cache":
                if config.cache is not None and self.cache(directive) != config.cache:
                    self.error(directive, f"cache in {label} differs from the kubernetes block's: clusterdns has one cache")
                elif config.cache is None:
                    self.error(directive, f"cache in {label} but not in the kubernetes block: clusterdns has one cache")
            elif name in ("errors", "loop", "bind", "reload"):
                pass
            elif name in ("log", "loadbalance", "prometheus", "health", "ready"):
                config.notes.append(f"{directive.where}: {name} in {label} applies to the whole server in clusterdns")
            elif name in SUPPORTED:
                self.error(directive, f"{name} in {label}: clusterdns supports it only in the kubernetes block")
        if not any(d.name == "cache" for d in block.directives) and config.cache is not None:
            config.notes.append(f"{label}: no cache here, but clusterdns's one cache keeps its answers too")

    # -- pieces

    def forward(self, d: Directive) -> Forward | None:
        if len(d.args) < 2:
            self.error(d, "forward needs FROM and at least one TO")
            return None
        zone = self.zone_of(d.args[0])
        upstreams, resolv_conf = [], None
        for arg in d.args[1:]:
            text = arg.text
            scheme, sep, rest = text.partition("://")
            if sep and scheme != "dns":
                self.error(arg, f"forward to {text}: {scheme}:// upstreams are not supported by clusterdns (dns:// only)")
                continue
            text = rest if sep else text
            if "/" in text:  # a path: a resolv.conf to take the nameservers of
                if resolv_conf is not None:
                    self.error(arg, "forward: one resolv.conf file at most")
                resolv_conf = text
                continue
            try:
                upstreams.append(parse_address(text, "forward to"))
            except ValueError as exc:
                self.error(arg, str(exc))
        forward = Forward(zone, tuple(upstreams), resolv_conf, where=d.where)
        for line in d.block or ():
            name, values = line.name, line.values
            if name == "except" and values:
                forward = replace(forward, except_zones=tuple(self.zone_of(a) for a in line.args))
                self.error(line, "forward except is not supported by clusterdns: give the excepted zone its own "
                                 "forward (a stub) instead")
            elif name == "force_tcp" and not values:
                forward = replace(forward, force_tcp=True)
                self.error(line, "forward force_tcp is not supported by clusterdns (it asks over UDP, then TCP on TC)")
            elif name == "prefer_udp" and not values:
                forward = replace(forward, prefer_udp=True)  # what clusterdns always does
            elif name == "expire" and len(values) == 1:
                forward = replace(forward, expire=self.duration(line.args[0]))
            elif name == "max_fails" and len(values) == 1 and values[0].isdigit():
                forward = replace(forward, max_fails=int(values[0]))
                self.notes.append(f"{line.where}: forward max_fails {values[0]}: clusterdns marks an upstream down "
                                  "at its first failure and health-checks it back")
            elif name == "policy" and len(values) == 1 and values[0] in ("random", "round_robin", "sequential"):
                forward = replace(forward, policy=values[0])
            elif name == "health_check" and len(values) == 1:
                forward = replace(forward, health_check=self.duration(line.args[0]))  # its probe is `. IN NS`
            elif name == "max_concurrent" and len(values) == 1 and values[0].isdigit():
                forward = replace(forward, max_concurrent=int(values[0]))
            else:
                self.error(line, _option_error("forward", line, FORWARD_OPTIONS))
        return forward

    def cache(self, d: Directive) -> Cache:
        cache, args = Cache(), list(d.args)
        if args and args[0].text.isdigit():
            ttl = int(args.pop(0).text)
            cache = replace(cache, max_ttl=ttl, denial_max_ttl=min(ttl, 1800) if ttl else cache.denial_max_ttl)
        if args:
            cache = replace(cache, zones=tuple(self.zone_of(a) for a in args))
        for line in d.block or ():
            name, values = line.name, line.values
            if name in ("success", "denial") and 1 <= len(values) <= 3 and all(v.isdigit() for v in values):
                numbers = [int(v) for v in values]
                if name == "success":
                    cache = replace(cache, success_size=numbers[0])
                    if len(numbers) > 1:
                        cache = replace(cache, max_ttl=numbers[1])
                    if len(numbers) > 2:
                        cache = replace(cache, min_ttl=numbers[2])
                else:
                    cache = replace(cache, denial_size=numbers[0])
                    if len(numbers) > 1:
                        cache = replace(cache, denial_max_ttl=numbers[1])
                    if len(numbers) > 2:
                        cache = replace(cache, denial_min_ttl=numbers[2])
            elif name == "prefetch":
                cache = replace(cache, prefetch=True)
                self.error(line, "cache prefetch is not supported by clusterdns")
            elif name == "serve_stale":
                stale = self.duration(line.args[0]) if values else 3600.0
                if len(values) > 1 and values[1] != "immediate":  # immediate: what clusterdns does
                    self.error(line, f"cache serve_stale {values[1]}: clusterdns serves stale answers immediate only")
                cache = replace(cache, serve_stale=stale)
            elif name == "disable" and len(values) >= 2 and values[0] in ("success", "denial"):
                # kubeadm: disable success/denial <cluster domain>. The cluster zone is never TTL-cached here
                # (its answers are dropped exactly when they change), so only that use is honoured.
                cache = replace(cache, disabled=cache.disabled + tuple((line, self.zone_of(a)) for a in line.args[1:]))
            else:
                self.error(line, _option_error("cache", line, CACHE_OPTIONS))
        return cache

    def http(self, config: Config, address: tuple[str, int], path: str) -> None:
        options = config.options
        listeners = list(options.http_listeners)
        for i, (host, port, paths) in enumerate(listeners):
            if (host, port) == address:
                listeners[i] = (host, port, paths | {path})
                break
        else:
            listeners.append((*address, frozenset({path})))
        options.http_listeners = tuple(listeners)

    def address(self, d: Directive, default: str) -> tuple[str, int]:
        if len(d.args) > 1:
            self.error(d, f"{d.name} takes at most one address")
        text = d.args[0].text if d.args else default
        host, colon, port = text.rpartition(":")
        if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
            self.error(d, f"{d.name} {text}: expected [HOST]:PORT, e.g. :8080")
            return ALL_IPV4, 0
        host = host.strip("[]")
        return ("127.0.0.1" if host == "localhost" else host), int(port)  # "": every interface

    def zone_of(self, token: Token) -> str:
        try:
            return _zone(token.text)
        except ValueError as exc:
            self.error(token, str(exc))
            return "."

    def duration(self, token: Token) -> float:
        try:
            return parse_duration(token.text)
        except ValueError as exc:
            self.error(token, str(exc))
            return 0.0

    def no_args(self, d: Directive) -> None:
        if d.args:
            self.error(d, f"{d.name} takes no arguments here")

    def no_block(self, d: Directive) -> None:
        if d.block is not None:
            self.error(d, f"{d.name} takes no {{ block }}")


KUBERNETES_OPTIONS = ("kubeconfig", "endpoint", "namespaces", "labels", "namespace_labels", "pods",
                      "endpoint_pod_names", "ttl", "noendpoints", "fallthrough", "ignore empty_service")
FORWARD_OPTIONS = ("prefer_udp", "expire", "max_fails", "policy", "health_check", "max_concurrent")
CACHE_OPTIONS = ("success", "denial", "prefetch", "serve_stale", "disable")
HOSTS_OPTIONS = ("inline entries", "ttl", "reload", "no_reverse", "fallthrough")


def _host_port(value: str) -> tuple[str, str]:
    """``192.0.2.1:53`` or ``[2001:db8::1]:53`` → (host, port); anything else → ("", "")."""
    if value.startswith("[") and "]:" in value:
        host, port = value[1:].split("]:", 1)
        return host, port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, port
    return "", ""


def _option_error(plugin: str, line: Directive, supported) -> str:
    return f'{plugin}: option "{" ".join([line.name, *line.values])}" is not supported by clusterdns ' \
           f'or is malformed (supported: {", ".join(supported)})'


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration (``5s``, ``1m30s``, ``500ms``) in seconds; a bare number is seconds."""
    if re.fullmatch(r"\d+", text):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration (e.g. 5s, 1m30s, 500ms)")
    return sum(float(n) * _UNIT[u] for n, u in parts)


def _zone(text: str) -> str:
    """A zone as CoreDNS writes it: a name, ``.``, or a CIDR (→ its reverse zone)."""
    text = text.removeprefix("dns://")
    if "/" in text:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{text}: not a zone or a CIDR") from None
        step = 8 if network.version == 4 else 4
        if network.prefixlen % step:
            raise ValueError(f"{text}: clusterdns takes reverse zones on {step}-bit boundaries only")
        labels = network.network_address.reverse_pointer.split(".")
        keep = network.prefixlen // step
        total = 4 if network.version == 4 else 32
        return ".".join(labels[total - keep:]) + "."
    if text == ".":
        return "."
    return absolute(text)


def _addresses(listen: list[tuple[str, int]]) -> str:
    return ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in listen)


def _tokens_of(block: ServerBlock):
    yield from block.keys

    def walk(directives):
        for d in directives:
            yield d.token
            yield from d.args
            yield from walk(d.block or ())

    yield from walk(block.directives)
