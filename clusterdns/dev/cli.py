"""The ``clusterdns dev`` command line: ``dev`` (the resolver), ``dev setup`` and ``dev status``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import setup as setup_module

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_BIND = 0, 1, 2, 3
DEFAULT_LISTEN = "127.0.0.1:1053"
MDNS_PORT = 5353


def add_parser(commands) -> argparse.ArgumentParser:
    dev = commands.add_parser(
        "dev",
        help="the laptop resolver: cluster names for every kubeconfig context, reachable from this machine",
        description=(
            "Answer cluster names for kubeconfig contexts on a loopback port, without root: the current "
            "context under cluster.local, every context under CONTEXT.k8s, short forms (svc.ns, svc) for the "
            "current one, everything else forwarded. `dev setup` wires the zones into the OS resolver."
        ),
    )
    sub = dev.add_subparsers(dest="dev_command", metavar="[setup|status]")

    setup = sub.add_parser(
        "setup", help="send the cluster zones (only) to clusterdns dev through the OS resolver, or undo that",
        description=(
            "Split DNS only: the cluster zones go to clusterdns, everything else as before. "
            "--print shows every change, --apply makes them (root, unless --root) and records them, "
            "--undo reverses exactly what --apply did."
        ),
    )
    action = setup.add_mutually_exclusive_group(required=True)
    action.add_argument("--print", dest="action", action="store_const", const="print", help="show every change")
    action.add_argument("--apply", dest="action", action="store_const", const="apply", help="make the changes")
    action.add_argument("--undo", dest="action", action="store_const", const="undo", help="reverse the last --apply")
    setup.add_argument("--os", choices=setup_module.OS_NAMES, help="the resolver to configure (default: this machine's)")
    setup.add_argument("--root", metavar="DIR", default="/", help="apply under this directory instead of / (tests)")
    setup.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                       help="where clusterdns dev answers (default %(default)s)")
    setup.add_argument("--zone", default="cluster.local", help="the current context's zone (default %(default)s)")
    setup.add_argument("--suffix", default="k8s", help="the parent of the per-context zones (default %(default)s)")
    setup.add_argument("--forward-address", action="append", default=[], metavar="127.X.Y.Z",
                       help="macOS: an lo0 alias to add for --reach forward; repeatable "
                       "(default: those of a running clusterdns dev)")
    setup.add_argument("--status-url", default=None, metavar="URL",
                       help="the running dev server's status endpoint (default http://127.0.0.1:1054/status)")

    from .serving import add_server_options  # the server's own options live beside it

    add_server_options(dev)
    status = sub.add_parser("status", help="what a running clusterdns dev serves: each context, synced, services")
    status.add_argument("--status-url", default=None, metavar="URL",
                        help="the dev server's status endpoint (default http://127.0.0.1:1054/status)")
    status.add_argument("--json", action="store_true", help="print the status document as it is")
    return dev


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.dev_command == "setup":
        return run_setup(args, parser)
    if args.dev_command == "status":
        from .status import run_status

        return run_status(args)
    from .serving import run_server

    return run_server(args, parser)


def parse_loopback_listen(text: str, parser: argparse.ArgumentParser) -> tuple[str, int]:
    from ..server import parse_listen

    try:
        host, port = parse_listen(text)
    except ValueError as exc:
        parser.error(str(exc))
    if port == MDNS_PORT:
        parser.error(f"--listen {text}: port 5353 is mDNS (Bonjour, Avahi); pick another, e.g. {DEFAULT_LISTEN}")
    return host, port


def run_setup(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    root = Path(args.root)
    listen = parse_loopback_listen(args.listen, parser)
    if not root.is_dir():
        parser.error(f"--root {args.root}: not a directory")
    os_name = args.os or setup_module.detect_os(root)
    try:
        if args.action == "undo":
            return _undo(root)
        addresses = args.forward_address or (_running_forward_addresses(args.status_url) if os_name == "macos" else [])
        p = setup_module.plan(os_name, [args.zone, args.suffix], listen, addresses, root)
        if args.action == "print":
            sys.stdout.write(setup_module.render(p))
            return EXIT_OK
        if root == Path("/") and hasattr(os, "geteuid") and os.geteuid() != 0:
            print("clusterdns: dev setup --apply changes system files: run it with sudo "
                  "(or --print to see the changes)", file=sys.stderr)
            return EXIT_USAGE
        record = setup_module.apply(p, root, setup_module.Runner(execute=root == Path("/")))
    except setup_module.SetupError as exc:
        print(f"clusterdns: {exc}", file=sys.stderr)
        return EXIT_ERRORS
    for entry in record["files"]:
        print(f"{'replaced' if entry['previous'] is not None else 'created'} {entry['path']}")
    _report_commands(p.commands, record, root)
    print(f"recorded in {setup_module.STATE_FILE}; other names are forwarded to: "
          f"{', '.join(record['upstreams']) or 'nothing found (pass --upstream to clusterdns dev)'}")
    return EXIT_ERRORS if record["command_failures"] else EXIT_OK


def _undo(root: Path) -> int:
    record = setup_module.undo(root, setup_module.Runner(execute=root == Path("/")))
    for entry in reversed(record["files"]):
        print(f"{'restored' if entry['previous'] is not None else 'removed'} {entry['path']}")
    _report_commands(record.get("undo_commands", []), record, root)
    return EXIT_ERRORS if record["command_failures"] else EXIT_OK


def _report_commands(commands, record: dict, root: Path) -> None:
    for command in commands:
        print(("ran: " if root == Path("/") else "not run (--root): ") + command)
    for failure in record["command_failures"]:
        print(f"clusterdns: failed: {failure}", file=sys.stderr)


def _running_forward_addresses(url: str | None) -> list[str]:
    """The loopback addresses a running ``clusterdns dev`` forwards on (the lo0 aliases macOS needs); [] if none runs."""
    from .status import fetch_status

    status = fetch_status(url)
    if status is None:
        return []
    forwarded = [s for c in status["contexts"] for s in c["services"] if s.get("reach") == "forward"]
    return sorted({s["address"] for s in forwarded} | {p["address"] for s in forwarded for p in s.get("pods", [])})
