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

ROOT = Path(__file__).resolve().parents[3]

TARGET_KEYS = {"figure", "value", "unit", "reference", "reference_value", "target", "met"}
"""A row of the issue-14 targets table (benchmarks/README.md)."""

CASES = {
    "overhead": ["--stages", "5", "--repeats", "3"],
    "checkpoint": ["--rows", "2000", "--cols", "2", "--steps", "2", "--repeats", "1",
                   "--mem-repeats", "2"],
    "checkpoint_storage": ["--runs", "2", "--json"],
    "step_cache": ["--repeat", "1", "--json"],
    "s3_store": ["--repeat", "1", "--latency-ms", "0"],
    "tracing": ["--stages", "5", "--repeats", "3"],
    "manifest": ["--levels", "3", "4"],
    "steps": ["--sizes", "2", "4", "--repeats", "1", "--json"],
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
        doc = json.loads(proc.stdout)
        rows = doc["targets"]
        assert rows and all(set(row) >= TARGET_KEYS for row in rows)
        if name == "step_cache":  # the import floor is measured in the same rounds
            assert len(doc["rerun"]["floor_s"]) == len(doc["rerun"]["cached_s"])
            assert "runner.stages.alpha" in doc["rerun"]["floor_modules"]
            assert "floor" in rows[0]["note"]


def _run(script: Path | str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_startup_emits_its_targets_rows() -> None:
    proc = _run(ROOT / "benchmarks" / "startup.py", "--repeats", "1", "--no-kedro", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert set(doc["commands"]) == {"python -c pass", "runner --help", "runner list",
                                    "runner validate", "runner list --no-cache",
                                    "runner validate --no-cache"}
    assert doc["failed"] == {}
    rows = {row["figure"]: row for row in doc["targets"]}
    assert set(rows) == {f"runner {c} cold{vs}" for c in ("--help", "list", "validate")
                         for vs in ("", " vs kedro --help")}
    help_row = rows["runner --help cold"]
    assert help_row["unit"] == "s" and help_row["value"] > 0
    assert help_row["reference"] == "python -c pass" and help_row["reference_value"] > 0
    assert isinstance(help_row["met"], bool)
    kedro_row = rows["runner list cold vs kedro --help"]  # not measured: said so, never met
    assert kedro_row["value"] is None and kedro_row["met"] is False
    assert "not measured" in kedro_row["note"]


FAKE_GOOD = '''
import json, sys
TARGETS = True
rows = [{"figure": "fake fast", "value": 0.5, "unit": "x", "reference": "plain",
         "reference_value": 2.0, "target": "<= 0.6x", "met": True},
        {"figure": "fake slow", "value": 12.5, "unit": "ms", "reference": "plain",
         "reference_value": 1.0, "target": "<= 2 ms", "met": False}]
print("progress", file=sys.stderr)
print(json.dumps({"other": 1, "targets": rows}) if "--json" in sys.argv else "human")
'''
FAKE_BROKEN = 'TARGETS = True\nraise SystemExit("broken on purpose")\n'
FAKE_NO_TARGETS = 'TARGETS = True\nimport json\nprint(json.dumps({"ratio": 1.0}))\n'
FAKE_NOT_JSON = 'TARGETS = True\nprint("a table, not JSON")\n'
FAKE_UNMARKED = 'raise SystemExit("never run: not listed, not marked")\n'


def test_table_merges_rows_and_survives_failing_scripts(tmp_path: Path) -> None:
    for name, text in (("good", FAKE_GOOD), ("broken", FAKE_BROKEN),
                       ("quiet", FAKE_NO_TARGETS), ("prose", FAKE_NOT_JSON),
                       ("helper", FAKE_UNMARKED)):
        (tmp_path / f"{name}.py").write_text(text)
    table = ROOT / "benchmarks" / "table.py"
    proc = _run(table, "--dir", str(tmp_path), "--save", str(tmp_path / "out"), "--json")
    assert proc.returncode == 1, proc.stderr[-3000:]  # scripts failed: said by the exit code
    doc = json.loads(proc.stdout)
    by_figure = {row["figure"]: row for row in doc["rows"]}
    assert by_figure["fake fast"]["met"] is True and by_figure["fake fast"]["script"] == "good"
    assert by_figure["fake slow"]["met"] is False
    assert "broken on purpose" in by_figure["broken.py"]["error"]
    assert by_figure["prose.py"]["error"] == "printed no JSON object"
    assert set(doc["failed"]) == {"broken", "prose"}
    assert doc["without_targets"] == ["quiet"]
    assert (doc["met"], doc["targets"]) == (1, 2)
    assert "helper.py" not in by_figure
    assert json.loads((tmp_path / "out" / "good.json").read_text())["other"] == 1
    assert "progress" in proc.stderr  # a script's stderr is shown as it runs

    human = _run(table, "--dir", str(tmp_path), "--save", "")
    lines = human.stdout.splitlines()
    assert lines[0].split(" | ")[0].strip() == "figure"
    assert any(line.startswith("fake slow") and "12.5 ms" in line and "not met" in line
               for line in lines)
    assert any(line.startswith("broken.py") and "FAILED" in line for line in lines)
    assert "no targets (yet): quiet.py" in human.stdout
    assert lines[-1] == "1 of 2 targets met; 2 script(s) failed: broken.py, prose.py"


def test_table_lists_the_benchmarks_make_bench_runs() -> None:
    proc = _run(ROOT / "benchmarks" / "table.py", "--help")
    assert proc.returncode == 0
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import table
    finally:
        sys.path.pop(0)
    found = table.discover(ROOT / "benchmarks")
    assert list(found)[:3] == ["startup", "steps", "checkpoint"]
    assert "alpha_parallel" in found
    assert "table" not in found


ORPHAN = '''
import os, sys, time
if os.fork() == 0:  # outlives its parent, as a run's forkserver and workers do
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    os._exit(0)
print("parent done")
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux subreaper")
def test_alpha_parallel_counts_the_cpu_of_processes_that_outlive_the_driver() -> None:
    """The CPU figure holds the forkserver and workers, orphans once the driver ends."""
    import runpy

    timed = runpy.run_path(str(ROOT / "benchmarks" / "alpha_parallel.py"))["TIMED"]
    proc = subprocess.run([sys.executable, "-c", timed, sys.executable, "-c", ORPHAN],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["returncode"] == 0 and got["stdout"] == "parent done\n"
    assert got["cpu"] >= 0.3
