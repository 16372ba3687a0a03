"""Entries in /etc/hosts syntax, served before the cluster zone (CoreDNS's ``hosts`` plugin).

k3s writes its nodes' addresses into a hosts file (``NodeHosts``) and minikube
adds ``host.minikube.internal`` the same way; both rely on the DNS server
answering these names.  :class:`Hosts` holds the entries of every file (and
any inline lines), answers A, AAAA and PTR from them, and re-reads a file when
it changes.  A file that vanishes or cannot be read keeps its last good
entries; a bad line is reported with file and line and skipped.

Answers stay on the pre-encoded path: the wire cache stores them like zone
answers, and a reload tells the listeners (the wire cache's ``forget``) which
names changed, so only those answers are dropped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from dnslib import PTR, QTYPE, RCODE, RR, A, AAAA, DNSRecord

from .settings import absolute

log = logging.getLogger(__name__)

DEFAULT_TTL = 3600  # CoreDNS's hosts plugin
DEFAULT_RELOAD = 5.0  # seconds; CoreDNS re-reads the file this often
MAX_ERRORS_LOGGED = 10  # per file and read: a broken file must not flood the log
INLINE = "inline entries"


@dataclass(frozen=True, slots=True)
class HostsSettings:
    """What ``--hosts`` or a Corefile's ``hosts`` block asks for."""

    files: tuple[str, ...] = ()
    inline: tuple[str, ...] = ()  # lines in hosts-file syntax, after the files' entries
    zones: tuple[str, ...] = (".",)  # names outside these are ignored (PTRs always looked up)
    ttl: int = DEFAULT_TTL
    reverse: bool = True  # False: no PTR records (CoreDNS ``no_reverse``)
    fallthrough: bool = True  # a name not in the entries goes on to the cluster zone and forwarding
    fallthrough_zones: tuple[str, ...] = ()  # only for names in these zones (empty: all)
    reload: float = DEFAULT_RELOAD  # seconds between checks besides file events; 0: never re-read


@dataclass(frozen=True, slots=True)
class Entry:
    address: str  # normalised text form
    name: str  # lower case, absolute
    line: int


def parse_hosts(text: str, where: str) -> tuple[list[Entry], list[str]]:
    """Entries of a hosts file, in order, and one error per bad line (``where:line: ...``)."""
    entries: list[Entry] = []
    errors: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        problem = None
        if len(fields) < 2:
            problem = f"{fields[0]!r} has no host name after it"
        else:
            address = _address(fields[0])
            checked = [_host_name(f) for f in fields[1:]]
            names = [name for name in checked if name is not None]
            if address is None:
                problem = f"{fields[0]!r} is not an IPv4 or IPv6 address"
            elif None in checked:
                bad = fields[1 + checked.index(None)]
                problem = f"{bad!r} is not a valid host name"
        if problem is not None:
            errors.append(f"{where}:{number}: {problem}; line skipped")
            continue
        assert address is not None  # else a problem was reported
        entries += [Entry(address, name, number) for name in names]
    return entries, errors


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.split("%", 1)[0]))  # fe80::1%eth0: the zone is dropped
    except ValueError:
        return None


def _host_name(text: str) -> str | None:
    name = absolute(text)
    labels = name[:-1].split(".")
    if name == "." or len(name) > 254 or any(not label or len(label) > 63 for label in labels):
        return None
    return name


def in_zones(name: str, zones: Iterable[str]) -> bool:
    return any(zone == "." or name == zone or name.endswith("." + zone) for zone in zones)


@dataclass(frozen=True)
class HostsTable:
    """The merged entries as record sets: name → {A: ..., AAAA: ...}, reverse name → PTR targets."""

    addresses: dict[str, dict[int, tuple]] = field(default_factory=dict)
    pointers: dict[str, tuple] = field(default_factory=dict)

    @classmethod
    def build(cls, entries: Iterable[Entry], zones: tuple[str, ...], reverse: bool) -> "HostsTable":
        by_name: dict[str, dict[int, list[str]]] = {}
        by_address: dict[str, list[str]] = {}
        for entry in entries:
            if not in_zones(entry.name, zones):
                continue
            qtype = QTYPE.AAAA if ":" in entry.address else QTYPE.A
            known = by_name.setdefault(entry.name, {}).setdefault(qtype, [])
            if entry.address not in known:
                known.append(entry.address)
            names = by_address.setdefault(entry.address, [])
            if entry.name not in names:
                names.append(entry.name)
        addresses = {
            name: {qtype: tuple((AAAA if qtype == QTYPE.AAAA else A)(ip) for ip in ips) for qtype, ips in sets.items()}
            for name, sets in by_name.items()
        }
        pointers = {}
        if reverse:
            pointers = {
                ipaddress.ip_address(ip).reverse_pointer + ".": tuple(PTR(name) for name in names)
                for ip, names in by_address.items()
            }
        return cls(addresses, pointers)

    def names(self) -> set[str]:
        return set(self.addresses) | set(self.pointers)

    def entry_count(self) -> int:
        """Addresses by name plus names by address, as CoreDNS's hosts map counts its entries."""
        return sum(len(rds) for sets in self.addresses.values() for rds in sets.values()) + sum(
            len(rds) for rds in self.pointers.values()
        )

    def changed_since(self, old: "HostsTable") -> set[str]:
        """Names whose answers differ between ``old`` and this table."""
        changed = {n for n in self.addresses.keys() | old.addresses.keys() if self.addresses.get(n) != old.addresses.get(n)}
        changed |= {n for n in self.pointers.keys() | old.pointers.keys() if self.pointers.get(n) != old.pointers.get(n)}
        return changed


@dataclass
class _File:
    path: Path
    shown: str
    entries: list[Entry] = field(default_factory=list)  # last good read
    signature: tuple | None = None  # (inode, size, mtime) of the last good read, to skip unchanged files
    loaded: bool = False  # entries hold a good read
    problem: str | None = None  # why the last read failed, if it did (logged once)


class Hosts:
    """The hosts entries of one process; :meth:`answer` serves them, :meth:`watch` follows the files."""

    def __init__(self, settings: HostsSettings):
        self.settings = settings
        self._zones = tuple(absolute(z) for z in settings.zones)
        self._fallthrough_zones = tuple(absolute(z) for z in settings.fallthrough_zones)
        self._files = [_File(Path(p).absolute(), p) for p in settings.files]
        self._inline, inline_errors = parse_hosts("\n".join(settings.inline), INLINE)
        self._log_errors(INLINE, inline_errors)
        self.table = HostsTable()
        self.reloads = 0
        self.loaded_at = 0.0  # time.time() of the last read that replaced some file's entries
        # Called with the names whose answers changed (the wire cache's ``forget``).
        self.listeners: list[Callable[[Iterable[str] | None], None]] = []
        self.load()

    # ------------------------------------------------------------------ reading files

    def load(self) -> bool:
        """(Re-)read every file that changed on disk; True if the entries changed."""
        touched = [f for f in self._files if self._read(f)]
        if not touched and self.reloads:
            return False
        self.loaded_at = time.time()
        old, entries = self.table, [e for f in self._files for e in f.entries] + self._inline
        self.table = HostsTable.build(entries, self._zones, self.settings.reverse)
        changed = self.table.changed_since(old)
        count = sum(len(rds) for sets in self.table.addresses.values() for rds in sets.values())
        if self.reloads == 0:
            log.info("hosts entries: %d names, %d addresses from %s", len(self.table.addresses), count, self._sources())
        elif touched:
            log.info("reloaded hosts file %s: %d names, %d addresses; %d names changed",
                     ", ".join(f.shown for f in touched), len(self.table.addresses), count, len(changed))
        self.reloads += 1
        if changed:
            for listener in self.listeners:
                listener(changed)
        return bool(changed)

    def _sources(self) -> str:
        return ", ".join([f.shown for f in self._files] + ([INLINE] if self.settings.inline else [])) or "nothing"

    def _read(self, f: _File) -> bool:
        """Re-read ``f`` if it changed since the last read; True if its entries were replaced."""
        try:
            stat = os.stat(f.path)
            signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if signature == f.signature:
                return False
            text = f.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problem = "it is gone" if isinstance(exc, FileNotFoundError) else f"cannot read it: {exc}"
            f.signature = None  # re-read it whenever it is back, whatever its mtime
            if problem != f.problem:  # once per failure, not once per check
                f.problem = problem
                kept = f"keeping its last {len(f.entries)} entries" if f.loaded else "nothing loaded from it"
                log.error("hosts file %s: %s (%s)", f.shown, problem, kept)
            return False
        if f.problem is not None:
            log.info("hosts file %s is readable again", f.shown)
        f.problem = None
        f.signature, f.loaded = signature, True
        f.entries, errors = parse_hosts(text, f.shown)
        self._log_errors(f.shown, errors)
        return True

    @staticmethod
    def _log_errors(where: str, errors: list[str]) -> None:
        for message in errors[:MAX_ERRORS_LOGGED]:
            log.error("hosts file %s", message)
        if len(errors) > MAX_ERRORS_LOGGED:
            log.error("hosts file %s: %d more bad lines not shown", where, len(errors) - MAX_ERRORS_LOGGED)

    async def watch(self, stop: asyncio.Event, debounce_ms: int = 100) -> None:
        """Re-read the files when they change, until ``stop`` is set.

        Each file is watched through its directory: editors save by renaming a new
        file over the old one, and a Kubernetes ConfigMap volume swaps a symlink,
        neither of which a watch on the file itself would survive.  ``reload``
        seconds without an event also trigger a check (for file systems without
        change events); the check compares inode, size and mtime, so it is cheap.
        """
        if not self.settings.reload or not self._files:
            return
        from watchfiles import awatch  # imported here: only serving needs it

        directories = sorted({f.path.parent for f in self._files if f.path.parent.is_dir()})
        if not directories:
            return
        ours = {str(f.path) for f in self._files}

        def relevant(change, path: str) -> bool:
            # Our files, and the symlink a ConfigMap volume swaps; not the rest of a busy /etc or /tmp.
            return path in ours or path.endswith("/..data")

        async for _ in awatch(
            *directories, watch_filter=relevant, recursive=False, stop_event=stop, debounce=debounce_ms, step=50,
            rust_timeout=int(self.settings.reload * 1000), yield_on_timeout=True,
        ):
            self.load()

    # ------------------------------------------------------------------ answering

    def serves(self, name: str) -> bool:
        """Is ``name`` (lower case, absolute) answered from the hosts entries?  (Not forwarded, then.)"""
        table = self.table
        return name in table.addresses or name in table.pointers or (
            in_zones(name, self._zones) and not self._falls_through(name)
        )

    def _falls_through(self, name: str) -> bool:
        settings = self.settings
        return settings.fallthrough and (not self._fallthrough_zones or in_zones(name, self._fallthrough_zones))

    def answer(self, reply: DNSRecord, name: str, qname, qtype: int) -> bool:
        """Fill ``reply`` from the entries if they answer ``name``; False: fall through.

        As CoreDNS: a name with addresses but not of the asked type gets NOERROR
        and no records (no SOA: a hosts file has none); a name in the hosts zones
        that is not in the entries gets SERVFAIL unless it falls through; a PTR
        name not in the entries always falls through.
        """
        table = self.table
        ttl = self.settings.ttl
        if qtype == QTYPE.PTR and name in table.pointers:
            reply.header.aa = 1
            for rdata in table.pointers[name]:
                reply.add_answer(RR(qname, QTYPE.PTR, ttl=ttl, rdata=rdata))
            return True
        sets = table.addresses.get(name)
        if sets is None:
            if qtype == QTYPE.PTR or not in_zones(name, self._zones) or self._falls_through(name):
                return False
            reply.header.rcode = RCODE.SERVFAIL
            return True
        reply.header.aa = 1
        for t in (QTYPE.A, QTYPE.AAAA) if qtype == QTYPE.ANY else (qtype,):
            for rdata in sets.get(t, ()):
                reply.add_answer(RR(qname, t, ttl=ttl, rdata=rdata))
        return True
