"""``clusterdns dev setup``: wire the cluster zones into the OS resolver as split DNS, and take it out again.

Only the cluster zones (``cluster.local``, ``k8s``) are sent to clusterdns; the
OS keeps resolving everything else as before, so clusterdns never takes over
``.``.  Each operating system reads a different set of files:

* ``systemd-resolved``: a dummy link made by systemd-networkd that carries
  ``DNS=127.0.0.1:1053``, the routing-only domains ``~cluster.local ~k8s`` and
  ``DNSDefaultRoute=no``.  Per-link routing domains are what send a ``.local``
  name to unicast DNS instead of mDNS; DNS servers in resolved.conf (the global
  scope) would also be asked for every name no link claims, which is taking
  over ``.``.
* ``macos``: ``/etc/resolver/<zone>`` with ``nameserver`` and ``port``, and
  ``ifconfig lo0 alias`` for the loopback addresses of ``--reach forward``
  (macOS answers only 127.0.0.1 on lo0 until aliases are added).
* ``windows``: NRPT rules, printed as PowerShell (never applied from here).
* ``networkmanager``: NetworkManager's dnsmasq plugin with ``server=/zone/127.0.0.1#1053``.

:func:`plan` is pure: it says which files to write and which commands to run.
:func:`apply` makes the changes under a root directory (``/``, or a fake root in
tests) and records what it did, with every file's previous bytes, in a state
file; :func:`undo` reverses exactly that, so apply then undo leaves the tree as
it was, byte for byte.  The same record holds the resolvers the machine used
before, which ``clusterdns dev`` forwards other names to.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

from .upstreams import captured_upstreams

OS_NAMES = ("systemd-resolved", "macos", "windows", "networkmanager")
STATE_FILE = "/var/lib/clusterdns/setup.json"
STATE_VERSION = 1
LINK_NAME = "clusterdns0"
NRPT_COMMENT = "clusterdns"
HEADER = "Written by `clusterdns dev setup`; `clusterdns dev setup --undo` removes it."


class SetupError(Exception):
    """The change cannot be made (or undone); the message says why and what to do."""


@dataclass(frozen=True)
class FileChange:
    path: str  # as the OS sees it, absolute: /etc/resolver/cluster.local
    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class Plan:
    os: str
    zones: tuple[str, ...]
    listen: tuple[str, int]
    files: tuple[FileChange, ...] = ()
    commands: tuple[str, ...] = ()  # run after the files are in place
    undo_commands: tuple[str, ...] = ()  # run after the files are gone
    notes: tuple[str, ...] = ()
    applicable: bool = True  # False: print only (Windows)


def detect_os(root: Path = Path("/")) -> str:
    """The resolver this machine uses, by platform and by the files it has."""
    if sys.platform == "darwin":
        return "macos"
    if sys.platform == "win32":
        return "windows"
    nm_conf = [root / "etc/NetworkManager/NetworkManager.conf", *sorted((root / "etc/NetworkManager/conf.d").glob("*.conf"))]
    if any(_mentions_dnsmasq(p) for p in nm_conf):
        return "networkmanager"
    return "systemd-resolved"


def _mentions_dnsmasq(path: Path) -> bool:
    try:
        return any(line.strip().replace(" ", "") == "dns=dnsmasq" for line in path.read_text().splitlines())
    except OSError:
        return False


def plan(
    os_name: str,
    zones: Sequence[str],
    listen: tuple[str, int],
    forward_addresses: Sequence[str] = (),
    root: Path = Path("/"),
) -> Plan:
    """What ``setup`` would change for ``os_name`` so that ``zones`` go to ``listen``."""
    zones = tuple(z.strip(".").lower() for z in zones)
    host, port = listen
    if os_name == "systemd-resolved":
        return _resolved_plan(zones, host, port)
    if os_name == "macos":
        return _macos_plan(zones, host, port, forward_addresses)
    if os_name == "windows":
        return _windows_plan(zones, host, port)
    if os_name == "networkmanager":
        return _networkmanager_plan(zones, host, port, root)
    raise SetupError(f"unknown OS {os_name!r}: expected one of {', '.join(OS_NAMES)}")


def _resolved_plan(zones: tuple[str, ...], host: str, port: int) -> Plan:
    server = f"{host}:{port}" if port != 53 else host
    netdev = f"# {HEADER}\n# A dummy link that only carries DNS settings for systemd-resolved.\n[NetDev]\nName={LINK_NAME}\nKind=dummy\n"
    network = (
        f"# {HEADER}\n"
        f"[Match]\nName={LINK_NAME}\n\n"
        "[Link]\nRequiredForOnline=no\n\n"
        "[Network]\n"
        "# Port syntax needs systemd 246 or later.\n"
        f"DNS={server}\n"
        "# '~': routing-only domains. Only these names go to clusterdns, and a .local zone\n"
        "# is sent here instead of to mDNS.\n"
        f"Domains={' '.join('~' + z for z in zones)}\n"
        "# Never asked for names outside those domains: clusterdns does not take over '.'.\n"
        "DNSDefaultRoute=no\n"
        "LinkLocalAddressing=no\n"
        "ConfigureWithoutCarrier=yes\n"
    )
    return Plan(
        os="systemd-resolved",
        zones=zones,
        listen=(host, port),
        files=(
            FileChange(f"/etc/systemd/network/80-{LINK_NAME}.netdev", netdev),
            FileChange(f"/etc/systemd/network/80-{LINK_NAME}.network", network),
        ),
        commands=("networkctl reload", f"networkctl reconfigure {LINK_NAME}"),
        undo_commands=(f"ip link delete {LINK_NAME}", "networkctl reload"),
        notes=(
            "Needs systemd-networkd running (systemctl enable --now systemd-networkd); it only manages this link.",
            f"Check: resolvectl status {LINK_NAME} shows the DNS server and the ~ domains; "
            f"resolvectl query kubernetes.default.svc.{zones[0]} answers.",
            "systemd 258 and later can do the same without a link: a file in /etc/systemd/dns-delegate.d/ "
            "with [Delegate] DNS= and Domains= (see systemd.dns-delegate(5)).",
        ),
    )


def _macos_plan(zones: tuple[str, ...], host: str, port: int, forward_addresses: Sequence[str]) -> Plan:
    files = tuple(
        FileChange(f"/etc/resolver/{zone}", f"# {HEADER}\nnameserver {host}\nport {port}\n") for zone in zones
    )
    aliases = [a for a in dict.fromkeys(forward_addresses) if a != "127.0.0.1"]
    notes = [
        "dig and nslookup do not read /etc/resolver: test with "
        f"`dscacheutil -q host -a name kubernetes.default.svc.{zones[0]}` or `scutil --dns`.",
        "Flush the cache after a change: sudo dscacheutil -flushcache; sudo killall -HUP mDNSResponder",
    ]
    if not aliases:
        notes.append(
            "--reach forward needs an lo0 alias per forwarded Service: run this again while `clusterdns dev` runs "
            "to get them (or pass --forward-address)."
        )
    return Plan(
        os="macos",
        zones=zones,
        listen=(host, port),
        files=files,
        commands=tuple(f"ifconfig lo0 alias {a} up" for a in aliases),
        undo_commands=tuple(f"ifconfig lo0 -alias {a}" for a in aliases),
        notes=tuple(notes),
    )


def _windows_plan(zones: tuple[str, ...], host: str, port: int) -> Plan:
    commands = tuple(
        f'Add-DnsClientNrptRule -Namespace ".{zone}" -NameServers "{host}" -Comment "{NRPT_COMMENT}"' for zone in zones
    ) + ("Clear-DnsClientCache",)
    undo = (
        f'Get-DnsClientNrptRule | Where-Object Comment -eq "{NRPT_COMMENT}" | Remove-DnsClientNrptRule -Force',
        "Clear-DnsClientCache",
    )
    notes = [
        "Run these in an elevated PowerShell; clusterdns prints them and changes nothing on Windows itself.",
        "NRPT rules cannot name a port: Windows always asks port 53. Run `clusterdns dev --listen "
        f"{host}:53` there (binding port 53 needs no administrator on Windows, but nothing else may hold it, "
        "e.g. Internet Connection Sharing).",
        f"Check: Resolve-DnsName kubernetes.default.svc.{zones[0]} (nslookup bypasses NRPT).",
        "To undo: " + undo[0],
    ]
    if port != 53:
        notes.insert(0, f"This machine's clusterdns listens on port {port}: NRPT will not reach it there.")
    return Plan(os="windows", zones=zones, listen=(host, port), commands=commands, undo_commands=undo,
                notes=tuple(notes), applicable=False)


def _networkmanager_plan(zones: tuple[str, ...], host: str, port: int, root: Path) -> Plan:
    files = [
        FileChange(
            f"/etc/NetworkManager/dnsmasq.d/{NRPT_COMMENT}.conf",
            f"# {HEADER}\n" + "".join(f"server=/{zone}/{host}#{port}\n" for zone in zones),
        )
    ]
    nm_conf = [root / "etc/NetworkManager/NetworkManager.conf", *sorted((root / "etc/NetworkManager/conf.d").glob("*.conf"))]
    notes = [f"Check: dig kubernetes.default.svc.{zones[0]} (/etc/resolv.conf then names NetworkManager's "
             "dnsmasq, 127.0.0.1 or 127.0.1.1)."]
    if not any(_mentions_dnsmasq(p) for p in nm_conf):
        files.append(FileChange(f"/etc/NetworkManager/conf.d/{NRPT_COMMENT}.conf",
                                f"# {HEADER}\n# NetworkManager runs its own dnsmasq, which reads dnsmasq.d/.\n[main]\ndns=dnsmasq\n"))
        notes.append("This turns on NetworkManager's dnsmasq plugin (dns=dnsmasq); --undo turns it off again.")
    return Plan(
        os="networkmanager",
        zones=zones,
        listen=(host, port),
        files=tuple(files),
        commands=("systemctl reload NetworkManager",),
        undo_commands=("systemctl reload NetworkManager",),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- printing


def render(p: Plan) -> str:
    """Every change ``p`` makes, as a person reads it."""
    out = [f"# clusterdns dev setup for {p.os}: {', '.join(p.zones)} -> {p.listen[0]} port {p.listen[1]}"]
    for change in p.files:
        out.append(f"\n## write {change.path}")
        out.append(change.content.rstrip("\n"))
    if p.commands:
        out.append("\n## then run" + (" (PowerShell, as administrator)" if p.os == "windows" else ""))
        out.extend(p.commands)
    if p.undo_commands and p.os != "windows":
        out.append("\n## --undo removes the files above and runs")
        out.extend(p.undo_commands)
    if p.notes:
        out.append("\n## notes")
        out.extend(f"- {note}" for note in p.notes)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- apply and undo


@dataclass
class Runner:
    """Runs the plan's commands, or (fake root, tests) only records them."""

    execute: bool
    ran: list[str] = field(default_factory=list)

    def __call__(self, commands: Sequence[str]) -> list[str]:
        failed = []
        for command in commands:
            self.ran.append(command)
            if self.execute:
                result = subprocess.run(shlex.split(command), capture_output=True, text=True)
                if result.returncode != 0:
                    failed.append(f"{command}: {result.stderr.strip() or f'exit {result.returncode}'}")
        return failed


def under(root: Path, path: str) -> Path:
    return root / PurePosixPath(path).relative_to("/")


def state_path(root: Path) -> Path:
    return under(root, STATE_FILE)


def read_state(root: Path) -> dict | None:
    """The record of the last ``--apply`` under ``root``, or None."""
    path = state_path(root)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SetupError(f"{path}: cannot read the setup record: {exc}") from exc


def apply(p: Plan, root: Path, run: Runner) -> dict:
    """Make ``p``'s changes under ``root`` and record them; returns the record.

    Refuses when a record already exists (undo first), so a second apply can
    never overwrite the first one's "previous contents".
    """
    if not p.applicable:
        raise SetupError(f"{p.os}: nothing is applied from here; run the printed commands (--print) yourself")
    if read_state(root) is not None:
        raise SetupError(f"{state_path(root)} exists: setup was already applied; run --undo first")
    record: dict = {
        "version": STATE_VERSION,
        "os": p.os,
        "applied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "zones": list(p.zones),
        "listen": [p.listen[0], p.listen[1]],
        # Captured before our changes take effect: what "everything else" is forwarded to.
        "upstreams": captured_upstreams(root, p.listen),
        "files": [],
        "created_dirs": [],
        "undo_commands": list(p.undo_commands),
    }
    state = state_path(root)
    try:
        for change in p.files:
            target = under(root, change.path)
            record["created_dirs"] += _make_parents(target, root)
            entry: dict = {"path": change.path, "previous": None, "previous_mode": None}
            if target.exists():
                entry["previous"] = base64.b64encode(target.read_bytes()).decode()
                entry["previous_mode"] = target.stat().st_mode & 0o7777
            record["files"].append(entry)
            _write(target, change.content.encode(), change.mode)
        record["created_dirs"] += _make_parents(state, root)
        _write(state, (json.dumps(record, indent=2) + "\n").encode(), 0o644)
    except OSError as exc:
        _restore(record, root)
        raise SetupError(f"cannot write {exc.filename}: {exc.strerror} (nothing was left changed)") from exc
    record["command_failures"] = run(p.commands)
    return record


def undo(root: Path, run: Runner) -> dict:
    """Reverse the last ``--apply`` under ``root`` exactly; returns the record it reversed."""
    record = read_state(root)
    if record is None:
        raise SetupError(f"{state_path(root)} does not exist: nothing to undo")
    if record.get("version") != STATE_VERSION:
        raise SetupError(f"{state_path(root)}: record version {record.get('version')!r}, expected {STATE_VERSION}")
    state_path(root).unlink()
    _restore(record, root)
    record["command_failures"] = run(record.get("undo_commands", []))
    return record


def _restore(record: dict, root: Path) -> None:
    for entry in reversed(record["files"]):
        target = under(root, entry["path"])
        if entry["previous"] is None:
            target.unlink(missing_ok=True)
        else:
            _write(target, base64.b64decode(entry["previous"]), entry["previous_mode"])
    for directory in reversed(record["created_dirs"]):
        try:
            under(root, directory).rmdir()
        except OSError:
            pass  # something else was put there since: leave it


def _make_parents(target: Path, root: Path) -> list[str]:
    """Create ``target``'s missing parent directories; returns them (as OS paths), outermost first."""
    missing = []
    parent = target.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    created = []
    for directory in reversed(missing):
        directory.mkdir(mode=0o755)
        created.append("/" + directory.relative_to(root).as_posix())
    return created


def _write(target: Path, data: bytes, mode: int) -> None:
    """Write atomically (a reader never sees half a file) with ``mode``."""
    tmp = target.with_name(f".{target.name}.clusterdns-tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, target)
