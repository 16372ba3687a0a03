"""``clusterdns dev status``: ask the running dev server what it serves, and print it.

The server keeps its state in memory and serves it as JSON at ``/status`` on
its HTTP port (beside /health, /ready, /metrics).  An endpoint rather than a
status file: the state (synced, API reachable, forwards in use) changes all
the time, a file would need rewriting on every change and would outlive a
crashed server, while "the endpoint does not answer" plainly means "not running".
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:1054/status"
TIMEOUT = 3.0


def fetch_status(url: str | None) -> dict | None:
    """The status document, or None when no dev server answers at ``url``."""
    try:
        with urllib.request.urlopen(url or DEFAULT_URL, timeout=TIMEOUT) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def render(status: dict) -> str:
    lines = [f"listening on {status['listen']}; other names go to "
             f"{', '.join(status['upstreams']) or 'nothing (REFUSED)'} (from {status['upstreams_from']})"]
    for report in status.get("collisions", []):
        lines.append(f"note: {report}")
    for c in status["contexts"]:
        state = "synced" if c["synced"] else "NOT synced"
        if c["error"]:
            state = f"not served: {c['error']}"
        elif not c["api_reachable"]:
            state += ", API unreachable (misses answer SERVFAIL)"
        lines.append("")
        count = len(c["services"])
        lines.append(f"context {c['name']}{' (current)' if c['current'] else ''}: {state}; "
                     f"zones {', '.join(z.rstrip('.') for z in c['zones'])}; {count} service{'s' if count != 1 else ''}")
        width = max((len(s["name"]) + len(s["namespace"]) + 1 for s in c["services"]), default=0)
        for s in c["services"]:
            answer = s["cname"] and f"CNAME {s['cname']}" or ", ".join(s["addresses"]) or "no address"
            extra = ""
            if s["node_ports"]:
                extra = " ports " + ", ".join(f"{p}->{n}" for p, n in s["node_ports"])
            if s.get("forward"):
                f = s["forward"]
                extra = f" ports {', '.join(map(str, f['ports'])) or 'none'}, {f['connections']} connections"
                if f["last_error"]:
                    extra += f"; last error: {f['last_error']}"
            if s["note"]:
                extra += f" ({s['note']})"
            lines.append(f"  {s['name'] + '.' + s['namespace']:<{width}}  {s['reach']:<9} {s['via']:<29} {answer}{extra}")
    return "\n".join(lines) + "\n"


def run_status(args) -> int:
    status = fetch_status(args.status_url)
    if status is None:
        print(f"clusterdns: no clusterdns dev answers at {args.status_url or DEFAULT_URL} (is it running? "
              "its --http address?)", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(status, indent=2) + "\n" if args.json else render(status))
    return 0
