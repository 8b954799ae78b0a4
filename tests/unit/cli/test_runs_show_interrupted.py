"""``runner runs show`` and ``runner report`` of a run a signal stopped on purpose: its
message is labelled ``interrupted:``, never ``error:`` (kept for failed runs), in the
text, in ``--json`` (``interruption``, with ``error`` null: ``error`` means something
failed) and in the report (an "Interrupted" section). Real CLI subprocesses; the run is
stopped by a Ctrl-C (SIGINT) its first stage sends to its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]

STAGES = '''import os
import signal
import time
from pathlib import Path

from runner.context import Context
from runner.registry import stage


@stage("first", writes=["audit_trail"])
def first(ctx: Context) -> Context:
    if Path("stop.flag").exists():
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the first step runs
        time.sleep(0.2)
    if Path("fail.flag").exists():
        raise ValueError("the data is not there yet")
    ctx.audit_trail = [*ctx.audit_trail, "first"]
    return ctx


@stage("second", writes=["audit_trail"])
def second(ctx: Context) -> Context:
    ctx.audit_trail = [*ctx.audit_trail, "second"]
    return ctx
'''
MANIFEST = {"pipelines": {"p": {"steps": ["first", "second"]}},
            "stages": {"first": "my_stages:first", "second": "my_stages:second"}}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "my_stages.py").write_text(STAGES, encoding="utf-8")
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST), encoding="utf-8")
    return tmp_path


def cli(*args: Any, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RUNNER_DEBUG"}
    env.update(PYTHONPATH=str(ROOT), RUNNER_ARTIFACTS=str(cwd / "store"), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def run(project: Path, run_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("run", "p", "-m", "manifest.json", "--executor", "inline", "--run-id", run_id,
               "-q", *extra, cwd=project)


def report(project: Path, run_id: str) -> str:
    proc = cli("report", run_id, "-o", f"{run_id}.html", cwd=project)
    assert proc.returncode == 0, proc.stderr
    return (project / f"{run_id}.html").read_text(encoding="utf-8")


def test_an_interrupted_run_is_shown_as_interrupted_not_as_an_error(project):
    (project / "stop.flag").write_text("")
    stopped = run(project, "int-1")
    assert stopped.returncode == 130, stopped.stderr
    shown = cli("runs", "show", "int-1", cwd=project)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "status=interrupted" in lines[0]
    assert lines[1] == "interrupted: run 'int-1' interrupted by SIGINT: stopped after 1 of 2 steps"
    assert not [line for line in lines if "error:" in line]

    doc = json.loads(cli("runs", "show", "int-1", "--json", cwd=project).stdout)
    assert doc["status"] == "interrupted" and doc["error"] is None
    assert doc["interruption"] == {"type": "RunInterruptedError", "message": lines[1][13:]}

    page = report(project, "int-1")
    assert '<section id="error" class="interrupted">' in page
    assert "<h2>Interrupted</h2>" in page and "<h2>Error</h2>" not in page
    assert "--resume --run-id int-1" in page and "no traceback recorded" not in page

    # resumed: the first attempt is listed as interrupted, the run's current state is clean
    (project / "stop.flag").unlink()
    resumed = run(project, "int-1", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    shown = cli("runs", "show", "int-1", cwd=project).stdout
    assert "attempt 1: interrupted" in shown
    assert "  interrupted: run 'int-1' interrupted by SIGINT" in shown and "error:" not in shown
    doc = json.loads(cli("runs", "show", "int-1", "--json", cwd=project).stdout)
    assert [(h["status"], h["error"]) for h in doc["history"]] == [("interrupted", None)]
    assert doc["history"][0]["interruption"]["type"] == "RunInterruptedError"
    assert doc["error"] is None and "interruption" not in doc


def test_a_failed_run_is_still_an_error(project):
    (project / "fail.flag").write_text("")
    assert run(project, "fail-1").returncode == 1
    shown = cli("runs", "show", "fail-1", cwd=project).stdout.splitlines()
    assert shown[1].startswith("error: stage 'first' at p[0] failed"), shown
    doc = json.loads(cli("runs", "show", "fail-1", "--json", cwd=project).stdout)
    assert doc["error"]["message"] == shown[1][len("error: "):]
    assert "interruption" not in doc
    page = report(project, "fail-1")
    assert '<section id="error">' in page and "<h2>Error</h2>" in page
    assert "the data is not there yet" in page
