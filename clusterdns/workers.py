"""``serve --workers N``: N processes answering on the same ports, one per core.

One Python process answers on one core.  With ``--workers N`` the command
starts N-1 more copies of itself, each binding the same DNS addresses with
SO_REUSEPORT (the kernel spreads queries over the sockets) and each keeping
its own copy of the zone up to date from its own source (its own watch of the
API, or its own reading of the manifests), so no process waits on another.
Only the first process serves HTTP (/health, /ready, /metrics): its metrics
count its own queries, not the other workers'.

The copies get SIGTERM when the first process stops, and die with it if it is
killed (Linux's parent-death signal).
"""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import time
from typing import Sequence

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def worker_argv(argv: Sequence[str]) -> list[str]:
    """The command line of one more worker: the same, with one worker, shared ports and no HTTP listener."""
    return [sys.executable, "-m", "clusterdns.cli", *argv, "--workers", "1", "--reuse-port", "--http", ""]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the parent's SIGTERM on exit is the only stop


class Workers:
    """The extra worker processes of one ``serve``."""

    def __init__(self, count: int, argv: Sequence[str]):
        self.processes: list[subprocess.Popen] = []
        for _ in range(count):
            self.processes.append(subprocess.Popen(worker_argv(argv), preexec_fn=_die_with_parent))
        if self.processes:
            log.info("started %d more worker process(es) sharing the DNS ports: %s", len(self.processes),
                     ", ".join(str(p.pid) for p in self.processes))

    def exited(self) -> list[tuple[int, int]]:
        """(pid, exit code) of the workers that are gone."""
        return [(p.pid, p.returncode) for p in self.processes if p.poll() is not None]

    def stop(self, timeout: float) -> None:
        """SIGTERM each worker (they drain as the first process does), then wait; SIGKILL what is left."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop within %gs: killing it", process.pid, timeout)
                process.kill()
                process.wait()
