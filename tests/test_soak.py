"""`make soak`'s harness, on its two quickest scenarios: real servers, one table row each."""

import subprocess
import sys

from .conftest import ROOT


def test_soak_prints_a_row_per_scenario_and_its_verdict():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--only", "ports,sigterm", "--markdown"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("clusterdns soak, ")
    assert lines[1] == ("| scenario | load | answered | lost | errors logged | RSS before/peak/after MiB | "
                        "verdict |")
    rows = [line.split(" | ") for line in lines[3:] if line.startswith("| ")]
    assert [row[0].lstrip("| ") for row in rows] == ["SIGTERM with open TCP connections",
                                                     "port collisions: DNS and HTTP"]
    assert all(row[-1] == "PASS |" for row in rows)
