"""The console script ends the process without the interpreter's teardown, after what
shutdown does that matters: the exit handlers, the threads that are not daemons, the
flushed output, the exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli.leave import exit_code

ROOT = Path(__file__).resolve().parents[3]

STAGES = '''
import atexit, os, threading, time

def _late(folder):
    time.sleep(0.3)
    with open(os.path.join(folder, "thread"), "w") as fh:
        fh.write("joined")

def _at_exit(folder):
    with open(os.path.join(folder, "atexit"), "w") as fh:
        fh.write("ran")

def busy(ctx):
    folder = os.environ["LEAVE_PROBE"]
    atexit.register(_at_exit, folder)
    threading.Thread(target=_late, args=(folder,)).start()
    print("a line from the stage, buffered")
    return ctx

def broken(ctx):
    raise ValueError("no such ticker")
'''
MANIFEST = {
    "pipelines": {
        "busy": {"context": "runner.stages.contexts:PortfolioContext", "steps": ["own.busy"]},
        "broken": {"context": "runner.stages.contexts:PortfolioContext",
                   "steps": ["own.broken"]}},
    "stages": {"own.busy": "leave_stages:busy", "own.broken": "leave_stages:broken"},
}


def test_exit_codes_are_the_interpreters() -> None:
    assert (exit_code(None), exit_code(0), exit_code(3), exit_code(130)) == (0, 0, 3, 130)
    assert exit_code(256 + 2) == 2  # as the status keeps it


def test_a_message_exit_is_written_and_is_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code("stopped") == 1
    assert capsys.readouterr().err == "stopped\n"


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "leave_stages.py").write_text(STAGES)
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_", "TV_ORCH"))}
    env.update(PYTHONPATH=str(ROOT), LEAVE_PROBE=str(tmp_path))
    return subprocess.run([sys.executable, "-m", "runner.cli", *args, "-m", "manifest.json",
                           "--artifacts", "store"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_exit_handlers_threads_and_output_are_kept(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "run", "busy", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "succeeded"  # whole, flushed
    assert "a line from the stage, buffered" in proc.stderr  # --json: stage output on stderr
    assert (tmp_path / "thread").read_text() == "joined"
    assert (tmp_path / "atexit").read_text() == "ran"


def test_failures_keep_their_exit_codes(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "run", "broken")
    assert proc.returncode == 1, proc.stderr
    assert "no such ticker" in proc.stderr and "Traceback" not in proc.stderr
    proc = _cli(tmp_path, "run", "missing")
    assert proc.returncode == 2, proc.stderr
