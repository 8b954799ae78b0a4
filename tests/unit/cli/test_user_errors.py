"""Mistakes in the user's own stage code, as a researcher meets them at the command line:
a folder with a manifest and a ``my_stages.py``, the CLI in a subprocess.

An import-time error is theirs (exit 2, their file and line); a failing stage shows
their frame first, their short traceback and the command that resumes the run, on
every executor; each failure is said once; a stage that returns something else than
its context fails where it returns; with ``--json`` stdout is the JSON object only.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

STAGES = '''\
"""A researcher's stages."""
import os

import pandas as pd


def prepare(ctx):
    print("preparing the data")
    os.system("echo a subprocess of the stage speaks")
    ctx.audit_trail.append("prepared")
    return ctx


def lookup(frame):
    return frame["momentum"]


def signal(ctx):
    print("computing the signal")
    frame = pd.DataFrame({"close": [1.0, 2.0]})
    ctx.audit_trail.append(str(lookup(frame).sum()))
    return ctx


def other(ctx):
    print("the other branch")
    ctx.audit_trail.append("other")
    return ctx


def wrong(ctx):
    return ctx.feature_store
'''
LOOKUP_LINE = 15  # return frame["momentum"]
SIGNAL_LINE = 21  # ctx.audit_trail.append(str(lookup(frame).sum()))

MANIFEST = {
    "pipelines": {
        "research": {"steps": ["prepare", "signal"]},
        "fanout": {"steps": ["prepare", ["signal", "other"]]},
        "fine": {"steps": ["prepare", ["other", "prepare"]]},
        "returns": {"steps": ["prepare", "wrong"]},
        "returns.branch": {"steps": [["wrong", "other"]]},
    },
    "stages": {"prepare": "my_stages:prepare", "signal": "my_stages:signal",
               "other": "my_stages:other", "wrong": "my_stages:wrong"},
}


@pytest.fixture
def project(tmp_path):
    (tmp_path / "my_stages.py").write_text(STAGES)
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    return tmp_path


def cli(*args, cwd, env=None):
    full_env = {k: v for k, v in os.environ.items() if k != "RUNNER_DEBUG"}
    full_env.update(PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=300,
                          check=False)


# ---------------------------------------------------------------- import time

IMPORT_ERRORS = {
    "syntax": ("def prepare(ctx:\n    return ctx\n", 1, "SyntaxError", "def prepare(ctx:"),
    "raise": ("import os\n\nLIMIT = 3\nraise ValueError('LIMIT must come from the config')\n",
              4, "ValueError: LIMIT must come from the config", "raise ValueError("),
    "environ": ("import os\n\nTOKEN = os.environ['MY_DESK_TOKEN']\n", 3,
                "KeyError: 'MY_DESK_TOKEN'", "TOKEN = os.environ['MY_DESK_TOKEN']"),
}


@pytest.mark.parametrize("case", sorted(IMPORT_ERRORS))
@pytest.mark.parametrize("command", ["run", "validate"])
def test_an_error_at_import_time_is_the_users_exit_2_at_their_line(project, case, command):
    source, line, error, code = IMPORT_ERRORS[case]
    (project / "my_stages.py").write_text(source)
    args = ["run", "research"] if command == "run" else ["validate"]
    proc = cli(*args, "-m", "manifest.json", cwd=project)
    assert proc.returncode == 2, proc.stderr
    assert "bug in runner" not in proc.stderr and "internal error" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == "error: invalid pipeline in manifest.json:"
    # the manifest entry, the user's file and line, their code and the error
    assert lines[1].startswith("  stages.prepare: importing module 'my_stages' (for "
                               f"'my_stages:prepare') failed at my_stages.py line {line}")
    assert code in proc.stderr and error in proc.stderr
    # their frames, not ours: no frame of the runner or of importlib
    assert "runner/registry.py" not in proc.stderr and "importlib" not in proc.stderr
    # the module's other entries point at the first, not three tracebacks
    assert proc.stderr.count(error) == 1
    assert "  stages.signal: module 'my_stages' failed to import: see stages.prepare" in lines
    assert "unknown stage" not in proc.stderr
    if case != "syntax":
        debug = cli(*args, "-m", "manifest.json", cwd=project, env={"RUNNER_DEBUG": "1"})
        assert debug.returncode == 2 and "runner/registry.py" in debug.stderr


# ---------------------------------------------------------------- a failing stage


def _block(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("error: "))
    return lines[start:]


@pytest.mark.parametrize(("pipeline", "executor"), [
    ("research", "inline"), ("fanout", "inline"), ("fanout", "threads"),
    ("fanout", "processes")])
def test_a_failing_stage_shows_the_users_frame_first_then_how_to_resume(
        project, pipeline, executor):
    run_id = f"bad-{pipeline}-{executor}"
    proc = cli("run", pipeline, "-m", "manifest.json", "-e", executor, "--run-id", run_id,
               cwd=project)
    assert proc.returncode == 1, proc.stderr
    block = _block(proc.stderr)
    assert block[0].startswith("error: stage 'signal' at ") and "KeyError: 'momentum'" in block[0]
    # the last frame in the user's code first, not pandas' innermost one
    assert block[1] == f"  at my_stages.py line {LOOKUP_LINE}, in lookup"
    assert "(RUNNER_DEBUG=1 shows every frame)" in block[2]
    trace = block[2:block.index("  KeyError: 'momentum'") + 1]
    assert trace[1:5] == [
        f'    File "my_stages.py", line {SIGNAL_LINE}, in signal',
        "      ctx.audit_trail.append(str(lookup(frame).sum()))",
        f'    File "my_stages.py", line {LOOKUP_LINE}, in lookup',
        '      return frame["momentum"]']
    # the library frames below the user's, kept to one line; none of the runner's own
    assert trace[5].startswith("    ... ") and " in pandas (raised at pandas/" in trace[5]
    assert len(trace) == 7
    assert "runner/orchestration" not in proc.stderr and "Traceback" not in proc.stderr
    resume = block[-1].removeprefix("  once fixed, continue the run with: ")
    assert resume == (f"runner run {pipeline} -m manifest.json -e {executor} --resume "
                      f"--run-id {run_id}")
    # the forensics are intact and say the same
    info = json.loads((project / f"data/artifacts/summaries/runs/{run_id}/error.json")
                      .read_text())
    assert info["where"] == f"my_stages.py line {LOOKUP_LINE}, in lookup"
    assert "pandas/core" in info["traceback"] and "pandas/core" in info["user_traceback"]
    assert (project / f"data/artifacts/summaries/runs/{run_id}/error_context.pkl").exists()
    # fixed, the printed command continues the run
    (project / "my_stages.py").write_text(STAGES.replace('frame["momentum"]',
                                                         'frame["close"]'))
    again = cli(*shlex.split(resume)[1:], "--json", cwd=project)
    assert again.returncode == 0, again.stderr
    steps = json.loads(again.stdout)["steps"]
    assert "prepare" not in [s["name"] for s in steps if s["branch"] is None]


def test_runner_debug_shows_every_frame(project):
    proc = cli("run", "research", "-m", "manifest.json", cwd=project,
               env={"RUNNER_DEBUG": "1"})
    assert proc.returncode == 1
    block = _block(proc.stderr)
    assert block[1] == f"  at my_stages.py line {LOOKUP_LINE}, in lookup"
    assert "Traceback (most recent call last):" in proc.stderr
    assert "runner/orchestration/execute.py" in proc.stderr
    assert "pandas/core/indexes/base.py" in proc.stderr


def test_json_failure_carries_the_users_frame_and_the_resume_command(project):
    proc = cli("run", "research", "-m", "manifest.json", "--json", "--run-id", "j1",
               cwd=project)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["where"] == f"my_stages.py line {LOOKUP_LINE}, in lookup"
    assert 'return frame["momentum"]' in doc["traceback"]
    assert doc["resume_command"] == ("runner run research -m manifest.json --json --resume "
                                     "--run-id j1")


# ---------------------------------------------------------------- once


def test_a_failure_is_printed_once(project):
    proc = cli("run", "research", "-m", "manifest.json", cwd=project)
    assert proc.returncode == 1
    assert proc.stderr.count("KeyError: 'momentum'") == 2  # the error line, the traceback's
    assert proc.stderr.count("'momentum'") == 2
    assert "ERROR" not in proc.stderr  # no log line repeats it
    assert proc.stderr.count("✗ signal") == 1  # the progress mark, without the message
    structured = cli("--log-format", "json", "run", "research", "-m", "manifest.json",
                     cwd=project)
    records = [json.loads(line) for line in structured.stderr.splitlines()
               if line.startswith("{")]
    said = [r for r in records if "momentum" in json.dumps(r)]
    assert len(said) == 1 and said[0]["level"] == "ERROR" and said[0]["event"] == "error"
    assert said[0]["run_id"] and said[0]["where"].startswith("my_stages.py")
    failed = [r for r in records if r.get("status") == "failed"]
    assert {r["event"] for r in failed} == {"step_ended", "run_ended"}


def test_a_collision_is_printed_once(project):
    stages = STAGES + textwrap.dedent('''

        def left(ctx):
            ctx.run_id = ctx.run_id + "-left"
            return ctx


        def right(ctx):
            ctx.run_id = ctx.run_id + "-right"
            return ctx
        ''')
    (project / "my_stages.py").write_text(stages)
    manifest = {"pipelines": {"clash": {"steps": [["left", "right"]]}},
                "stages": {"left": "my_stages:left", "right": "my_stages:right"}}
    (project / "manifest.json").write_text(json.dumps(manifest))
    proc = cli("run", "clash", "-m", "manifest.json", cwd=project)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("context collision") == 1, proc.stderr
    assert proc.stderr.count("field 'run_id' changed by branches") == 1
    assert "ERROR" not in proc.stderr
    assert "once fixed, continue the run with: runner run clash" in proc.stderr


# ---------------------------------------------------------------- the return type


@pytest.mark.parametrize(("pipeline", "executor"), [
    ("returns", "inline"), ("returns.branch", "threads"), ("returns.branch", "processes")])
def test_a_stage_returning_something_else_fails_where_it_returns(project, pipeline, executor):
    proc = cli("run", pipeline, "-m", "manifest.json", "-e", executor, "--run-id", "w",
               cwd=project)
    assert proc.returncode == 1, proc.stderr
    block = _block(proc.stderr)
    assert "stage 'wrong' returned a DataFrame (pandas.DataFrame), not a Context" in block[0]
    assert "return ctx" in block[0]
    assert block[1] == "  at my_stages.py line 31, in wrong (the stage)"
    # failed as that stage, before the checkpoint hook could choke on it
    assert "✓ wrong" not in proc.stderr and "✗ wrong" in proc.stderr
    assert "pickle" not in block[0] and "CheckpointHook" not in proc.stderr
    info = json.loads((project / "data/artifacts/summaries/runs/w/error.json").read_text())
    assert info["stage"] == "wrong" and info["exception_type"] == "TypeError"


# ---------------------------------------------------------------- --json and prints


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_json_stdout_holds_the_object_only_while_stages_print(project, executor):
    proc = cli("run", "fine", "-m", "manifest.json", "-e", executor, "--json", cwd=project)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # nothing else on stdout
    assert doc["status"] == "succeeded"
    assert proc.stdout.count("\n") == 1
    # what the stages (and a process they started) printed is on stderr, in every process
    assert proc.stderr.count("preparing the data") == 2
    assert proc.stderr.count("a subprocess of the stage speaks") == 2
    assert "the other branch" in proc.stderr
    failed = cli("run", "research", "-m", "manifest.json", "-e", executor, "--json",
                 cwd=project)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["status"] == "failed"
    assert "computing the signal" in failed.stderr


def test_without_json_stage_output_stays_on_stdout(project):
    proc = cli("run", "fine", "-m", "manifest.json", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "preparing the data" in proc.stdout
