"""Memory, start-up and churn at cluster scale, with the real server process.

Usage: python bench/scale.py [--services 10000] [--churn 10000] [--skip-pods] [--only pods,...]

* 10,000 Services / ~30,000 endpoints: ``clusterdns serve`` from manifests and
  from the API (tests/fake_apiserver.py, run in this process and spoken to by
  the real kubernetes client): seconds from start to /ready, RSS when ready.
* 10,000 Services / ~100,000 endpoints / 150,000 Pods with ``--pods verified``
  from the API: the same figures (CoreDNS's sizing rule for that cluster:
  (pods + services) / 1000 + 54 MB = 214 MB), and the same cluster with
  ``--pods insecure`` (no pod watch), so the difference is what the pods cost.
  Every row also gives the server's CPU seconds until ready: the fake API
  server shares the machine, so wall time also counts its work.
* churn: 10,000 EndpointSlice changes through the API while dnsperf asks for
  names of services that do not change; how long until the last change is
  answered, and how many of the untouched names were still answered from the
  cache (coredns_cache_hits_total against the misses).
* flood: 300,000 never-seen names through the answer path (in this process),
  without and with EDNS: what the answer caches and their name index hold,
  and how far RSS grows (bounded by the cache size, not by the flood).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cluster import ZONE, generate, ipv4, write_manifests  # noqa: E402
from run import free_port  # noqa: E402

from tests.fake_apiserver import FakeApiServer, write_kubeconfig  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 1e6


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid``: the server's own work, steadier than wall time on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


class Clusterdns:
    """``clusterdns serve`` in a subprocess, with DNS and HTTP on loopback ports."""

    def __init__(self, work: Path, args: list[str]):
        self.dns_port, self.http_port = free_port(), free_port()
        self.log = (work / f"clusterdns-{self.dns_port}.log").open("w+")
        argv = [sys.executable, "-m", "clusterdns.cli", "serve", *args, "--listen", f"127.0.0.1:{self.dns_port}",
                "--http", f"127.0.0.1:{self.http_port}", "--log-level", "info"]
        if "--no-forward" in subprocess.run(argv[:4] + ["--help"], capture_output=True, text=True, cwd=ROOT).stdout:
            argv.append("--no-forward")
        self.started = time.monotonic()
        self.process = subprocess.Popen(argv, cwd=ROOT, stdout=self.log, stderr=self.log)

    def wait_ready(self, timeout: float = 300) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"clusterdns exited: {self.log.read()[-2000:]}")
            if http_get(self.http_port, "/ready")[0] == 200:
                return time.monotonic() - self.started
            time.sleep(0.02)
        raise SystemExit("clusterdns not ready in time")

    def logged(self, words: str) -> str:
        self.log.flush()
        self.log.seek(0)
        return next((line.strip() for line in self.log if words in line), "")

    def metric(self, name: str) -> float:
        _, text = http_get(self.http_port, "/metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def fake_api(objects) -> FakeApiServer:
    api = FakeApiServer().start()
    for obj in objects:
        api.add(obj)
    return api


def ready_from_manifests(work: Path, cluster, label: str) -> tuple[float, float]:
    """(seconds to /ready, RSS MB then)."""
    manifests = write_manifests(cluster, work / f"manifests-{label}")
    server = Clusterdns(work, ["--manifests", str(manifests.parent)])
    try:
        seconds = server.wait_ready()
        rss = rss_mb(server.process.pid)
        print(f"| {label} | manifests ({manifests.stat().st_size / 1e6:.0f} MB YAML) | {seconds:.2f} | "
              f"{rss:.0f} | {cpu_seconds(server.process.pid):.2f} | "
              f"{server.logged('loaded').split(' in ', 1)[-1][:90]} |")
        return seconds, rss
    finally:
        server.stop()
        shutil.rmtree(manifests.parent)


def ready_from_api(work: Path, cluster, label: str, extra: list[str] = (), churn: int = 0,
                   dnsperf: str | None = None) -> tuple[float, float, float | None]:
    """(seconds to /ready, RSS MB then, seconds until the last churned change was answered or None)."""
    api = fake_api(cluster.objects)
    kubeconfig = write_kubeconfig(work / "kubeconfig", api.url)
    server = Clusterdns(work, ["--kubeconfig", str(kubeconfig), "--startup-timeout", "120", *extra])
    try:
        seconds = server.wait_ready()
        rss = rss_mb(server.process.pid)
        print(f"| {label} | API | {seconds:.2f} | {rss:.0f} | "
              f"{cpu_seconds(server.process.pid):.2f} | "
              f"{server.logged('synced with the API in').split(' in ', 1)[-1][:90]} |")
        visible = churn_while_answering(api, server, cluster, churn, dnsperf, work) if churn else None
        return seconds, rss, visible
    finally:
        server.stop()
        api.stop()


def churn_while_answering(api: FakeApiServer, server: Clusterdns, cluster, changes: int, dnsperf: str | None,
                          work: Path) -> float:
    """Change ``changes`` EndpointSlices (of the first half of services) while asking for the second half."""
    slices = [o for o in cluster.objects if o["kind"] == "EndpointSlice"]
    half = len(slices) // 2
    churned, untouched = slices[:half], slices[half:]
    queries = work / "untouched.txt"
    queries.write_text("".join(f"{s['metadata']['labels']['kubernetes.io/service-name']}."
                               f"{s['metadata']['namespace']}.svc.{ZONE} A\n" for s in untouched[:2000]))
    load = None
    if dnsperf:
        # warm the cache with every untouched name, then keep asking at a steady rate during the churn
        subprocess.run([dnsperf, "-s", "127.0.0.1", "-p", str(server.dns_port), "-d", str(queries), "-n", "1"],
                       capture_output=True, timeout=60)
        load = subprocess.Popen([dnsperf, "-s", "127.0.0.1", "-p", str(server.dns_port), "-d", str(queries),
                                 "-l", "600", "-Q", "2000"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    hits0, misses0 = server.metric("coredns_cache_hits_total"), server.metric("coredns_cache_misses_total")
    started = time.monotonic()
    last = None
    for i in range(changes):
        obj = churned[i % len(churned)]
        obj["endpoints"][0]["addresses"] = [ipv4(0x600000 + i)]
        api.modify(obj)
        last = obj
    pushed = time.monotonic() - started
    name = (f"{last['endpoints'][0].get('hostname') or ipv4(0x600000 + changes - 1).replace('.', '-')}."
            f"{last['metadata']['labels']['kubernetes.io/service-name']}.{last['metadata']['namespace']}.svc.{ZONE}")
    want = ipv4(0x600000 + changes - 1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and want not in dig(server.dns_port, name):
        time.sleep(0.02)
    visible = time.monotonic() - started
    hits, misses = server.metric("coredns_cache_hits_total") - hits0, server.metric("coredns_cache_misses_total") - misses0
    lost = ""
    if load is not None:
        load.send_signal(signal.SIGINT)  # dnsperf prints its statistics on SIGINT
        out, _ = load.communicate(timeout=30)
        lost = next((line.strip() for line in out.splitlines() if "Queries lost" in line), "")
    print()
    print(f"churn: {changes} EndpointSlice changes pushed by the API in {pushed:.2f} s; the last one answered "
          f"{visible:.2f} s after the first was sent")
    print(f"       during it, {hits:.0f} of {hits + misses:.0f} queries for untouched names were cache hits "
          f"({hits / max(1, hits + misses):.1%}); dnsperf at 2,000 q/s: {lost}")
    return visible


def dig(port: int, name: str) -> str:
    from dnslib import DNSRecord

    try:
        return str(DNSRecord.parse(DNSRecord.question(name).send("127.0.0.1", port, timeout=1)))
    except OSError:
        return ""


def flood_memory(names: int = 300_000) -> None:
    """RSS growth under a flood of unique names: the caches evict, their index follows."""
    import gc

    import dns.message

    from clusterdns.app import load_manifests
    from clusterdns.settings import Settings

    from cluster import unique_queries

    work = Path(tempfile.mkdtemp(prefix="clusterdns-flood-"))
    cluster = generate(1000, 20)
    dns_, _ = load_manifests([write_manifests(cluster, work)], Settings())
    shutil.rmtree(work)
    responder = dns_.responder
    print()
    print(f"flood: {names:,} unique names, answer caches of {responder.cache.size:,} entries per tier")
    for edns in (False, True):
        responder.clear()
        gc.collect()
        before = rss_mb(os.getpid())
        for line in unique_queries(cluster, f"flood{int(edns)}", names):
            name, qtype = line.split()
            responder.respond(dns.message.make_query(name, qtype, use_edns=edns).to_wire(), True)
        gc.collect()
        cache = responder.cache
        grown = rss_mb(os.getpid()) - before
        # What the caches hold, object by object: RSS alone shows ~0 when the process reuses heap it freed
        # in the bench's earlier runs, and overstates it in a fresh process (allocator growth).
        held = deep_size([cache.exact, cache.by_question, cache._index, cache._seen])
        print(f"       {'with' if edns else 'without'} EDNS: {len(cache.exact):,} replayable answers, "
              f"{len(cache.by_question):,} by question, {cache.index_size():,} names indexed; the caches hold "
              f"{held / 1e6:.1f} MB ({held / max(1, len(cache.exact)):.0f} bytes per cached answer); RSS +{grown:.0f} MB")


def deep_size(obj, seen: set[int] | None = None) -> int:
    """Bytes held by ``obj`` and what it contains (dicts, tuples, lists, sets), each object counted once."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (tuple, list, set, frozenset)):
        size += sum(deep_size(item, seen) for item in obj)
    return size


RUNS = ("manifests", "api", "pods", "churn", "flood")


def _runs(text: str) -> tuple[str, ...]:
    runs = tuple(r.strip() for r in text.split(",") if r.strip())
    unknown = [r for r in runs if r not in RUNS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown run {', '.join(unknown)}; the runs are {', '.join(RUNS)}")
    return runs


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--churn", type=int, default=10_000, help="EndpointSlice changes in the churn run")
    parser.add_argument("--skip-pods", action="store_true", help="skip the 150,000-pod run")
    parser.add_argument("--flood", type=int, default=300_000, help="unique names in the flood run (0: skip it)")
    parser.add_argument("--only", type=_runs, default=RUNS,
                        help=f"comma-separated runs to do, of {','.join(RUNS)} (default: all)")
    args = parser.parse_args()
    runs = set(args.only) - ({"pods"} if args.skip_pods else set())
    verdicts: list[str] = []
    dnsperf = shutil.which("dnsperf")
    work = Path(tempfile.mkdtemp(prefix="clusterdns-scale-"))
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; Python {sys.version.split()[0]}")
    print()
    print("| cluster | from | seconds to /ready | RSS MB ready | server CPU s to ready | the server's own log |")
    print("|---|---|---|---|---|---|")
    try:
        small = generate(args.services, namespaces=100, endpoints_per_service=(2, 5))
        label = f"{args.services} services, {small.endpoint_count} endpoints"
        if "manifests" in runs:
            seconds, rss = ready_from_manifests(work, small, label)
            verdicts.append(verdict(f"RSS ready, {label}, from manifests", rss, 100, "MB"))
            verdicts.append(verdict(f"ready from manifests, {label}", seconds, 3, "s"))
        if "api" in runs:
            seconds, rss, _ = ready_from_api(work, small, label)
            verdicts.append(verdict(f"RSS ready, {label}, from the API", rss, 100, "MB"))
            verdicts.append(verdict(f"ready from the API, {label}", seconds, 2, "s"))
        if "pods" in runs:
            big = generate(args.services, namespaces=100, endpoints_per_service=(11, 11), pods=150_000)
            big_label = f"{args.services} services, {big.endpoint_count} endpoints, {big.pod_count} pods"
            _, rss, _ = ready_from_api(work, big, f"{big_label}, --pods verified", ["--pods", "verified"])
            verdicts.append(verdict(f"RSS ready, {big_label}, --pods verified", rss, 214, "MB"))
            # the same cluster without the pod watch: what the 150,000 pods themselves cost
            ready_from_api(work, big, f"{big_label}, --pods insecure (pods not watched)", ["--pods", "insecure"])
            del big
        if "churn" in runs:
            _, _, visible = ready_from_api(work, small, label + " (churn run)", churn=args.churn, dnsperf=dnsperf)
            assert visible is not None
            verdicts.append(verdict(f"{args.churn} endpoint changes applied while answering", visible, 10, "s"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.flood and "flood" in runs:
        flood_memory(args.flood)
    if verdicts:
        print()
        print("Targets (issue 9):")
        for line in verdicts:
            print(f"  {line}")


def verdict(what: str, value: float, target: float, unit: str) -> str:
    """``what`` against an upper bound: met, or missed by how much."""
    if value <= target:
        return f"{what}: {value:.2f} {unit} (target ≤ {target:g}) — met"
    return f"{what}: {value:.2f} {unit} (target ≤ {target:g}) — missed by {value - target:.2f} {unit} ({value / target - 1:.0%})"


if __name__ == "__main__":
    main()
