"""Results of ``runner run`` where a user looks for them: on stdout in text mode
(``> out.txt`` keeps them; progress and status stay on stderr), as one
``run_result`` JSON log line with ``--log-format json``, under ``result`` with
``--json``. A user's own context with a ``report()``, run in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

STAGES = textwrap.dedent('''
    from typing import Any
    from runner import Context, stage

    class Book(Context):
        cash: float = 0.0

        def report(self) -> dict[str, Any]:
            return {"positions": {"AAPL": 0.25, "MSFT": 0.75}, "cash": self.cash}

    class Odd:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    class BadBook(Book):
        odd: Any = None

        def report(self) -> dict[str, Any]:
            raise KeyError("positions")

    @stage("book.odd")
    def odd(ctx):
        ctx.odd = Odd()
        ctx.log("made an odd field")
        return ctx

    @stage("book.fill")
    def fill(ctx):
        ctx.cash = 12.5
        ctx.log("filled the book")
        return ctx
''')


def _project(tmp_path: Path) -> Path:
    (tmp_path / "book_stages.py").write_text(STAGES, encoding="utf-8")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({
        "pipelines": {"book": {"steps": ["book.fill"], "context": "book_stages:Book"},
                      "badbook": {"steps": ["book.fill", "book.odd"],
                                  "context": "book_stages:BadBook"}},
        "stages": {"book.fill": "book_stages:fill", "book.odd": "book_stages:odd"}}),
        encoding="utf-8")
    return manifest


def cli(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RUNNER_DEBUG", "RUNNER_LOG_FORMAT", "RUNNER_MANIFEST")}
    env.update(PYTHONPATH=str(ROOT), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def test_results_go_to_stdout_and_progress_to_stderr(tmp_path: Path) -> None:
    manifest = _project(tmp_path)
    proc = cli("run", "book", "-m", manifest, "--artifacts", tmp_path / "a", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "positions" in out and "AAPL" in out and "0.7500" in out and "cash: 12.5" in out
    assert "✓" not in out and "succeeded" not in out and "checkpoints:" not in out
    assert "✓ book.fill" in proc.stderr and "succeeded in" in proc.stderr
    assert "positions" not in proc.stderr

    quiet = cli("run", "book", "-m", manifest, "--artifacts", tmp_path / "a", "-q",
                cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "positions" in quiet.stdout and quiet.stderr == ""  # -q: results only


def test_json_logs_carry_the_results_in_one_run_result_line(tmp_path: Path) -> None:
    manifest = _project(tmp_path)
    proc = cli("run", "book", "-m", manifest, "--artifacts", tmp_path / "a",
               "--log-format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    results = [line for line in lines if line.get("event") == "run_result"]
    assert len(results) == 1
    (line,) = results
    assert line["result"] == {"positions": {"AAPL": 0.25, "MSFT": 0.75}, "cash": 12.5}
    assert line["run_id"] and line["trace_id"]
    assert line["run_id"] == next(r["run_id"] for r in lines if r.get("event") == "run_ended")


def test_json_output_keeps_its_single_object(tmp_path: Path) -> None:
    manifest = _project(tmp_path)
    proc = cli("run", "book", "-m", manifest, "--artifacts", tmp_path / "a", "--json",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["result"] == {"positions": {"AAPL": 0.25, "MSFT": 0.75}, "cash": 12.5}


def test_a_report_that_raises_is_a_note_not_a_failed_run(tmp_path: Path) -> None:
    """The user's report() is user code: the run succeeded, its results are not
    shown, and it says why once; results.json keeps the messages and fields."""
    manifest = _project(tmp_path)
    proc = cli("run", "badbook", "-m", manifest, "--artifacts", tmp_path / "a",
               "--run-id", "bad-1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    note = "note: BadBook.report() raised KeyError: 'positions'; the run's results are not shown"
    assert proc.stderr.count(note) == 1, proc.stderr
    doc = json.loads((tmp_path / "a/runs/bad-1/results.json").read_text())
    assert doc["report"] is None
    assert [m["step"] for m in doc["messages"]] == ["book.fill", "book.odd"]
    odd = next(f for f in doc["fields"] if f["name"] == "odd")
    assert odd == {"name": "odd", "type": "Odd", "value": "(cannot show it: RuntimeError)"}
