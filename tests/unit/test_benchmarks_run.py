"""The benchmark scripts still run against today's API (tiny sizes, nothing timed).

A benchmark that only ``make bench`` runs breaks silently when an API it calls
changes; here each one runs once, small, in a subprocess, and must exit 0 and
print its report. Ray's and the multi-process ones are left to ``make bench``:
their start-up alone would dominate this suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

TARGET_KEYS = {"figure", "value", "unit", "reference", "reference_value", "target", "met"}
"""A row of the issue-14 targets table (benchmarks/README.md)."""

CASES = {
    "overhead": ["--stages", "5", "--repeats", "3"],
    "checkpoint": ["--rows", "2000", "--cols", "2", "--steps", "2", "--repeats", "1",
                   "--mem-repeats", "2"],
    "tracing": ["--stages", "5", "--repeats", "3"],
    "manifest": ["--levels", "3", "4"],
    "alpha_parallel": ["--sets", "universe", "--tickers", "22", "--executors", "inline",
                       "processes", "--repeat", "1", "--no-warmup", "--json"],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmark_runs_small(name: str, tmp_path: Path) -> None:
    args = list(CASES[name])
    if name == "checkpoint":
        args += ["--dir", str(tmp_path)]
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip(), f"{name} printed no report"
    if "--json" in args:
        rows = json.loads(proc.stdout)["targets"]
        assert rows and all(set(row) == TARGET_KEYS for row in rows)
