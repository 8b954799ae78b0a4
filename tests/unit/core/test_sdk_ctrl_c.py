"""Ctrl-C in a script or notebook that calls ``QuantSDK.run_pipeline``: the run is recorded
as interrupted (run.json, spans), not as failed with an empty ``KeyboardInterrupt:``; the
caller still gets a KeyboardInterrupt, whose notes give the call (and the command) that
resumes the run; the interpreter stays usable and a resume finishes the run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from tests.unit.cli.test_user_errors import ROOT, cli

STAGES = '''\
import os
import time


def quick(ctx):
    ctx.log("quick")
    return ctx


def slow(ctx):
    open("started", "w").close()
    time.sleep(float(os.environ.get("SLEEP", "60")))
    return ctx
'''

MANIFEST = {
    "pipelines": {"demo": {"steps": ["quick", "slow", ["quick", "quick"], "quick"]}},
    "stages": {"quick": "my_stages:quick", "slow": "my_stages:slow"},
}

SCRIPT = '''\
import json
import os
import sys

from runner.sdk import QuantSDK

sdk = QuantSDK("manifest.json", artifacts="arts")
try:
    sdk.run_pipeline("demo", run_id="r1", executor=sys.argv[1])
except KeyboardInterrupt as exc:  # what a notebook cell shows; the kernel goes on
    print(json.dumps(getattr(exc, "__notes__", [])), flush=True)
    if sys.argv[2] == "again":
        os.environ["SLEEP"] = "0"
        result = sdk.run_pipeline("demo", run_id="r1", resume=True, executor=sys.argv[1])
        print("resumed", result.run_id, flush=True)
    sys.exit(0)
print("not interrupted")
'''


def _interrupt(tmp_path, executor: str, then: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "script.py", executor, then], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120  # a safety timeout only
    while not (tmp_path / "started").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the slow stage never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "my_stages.py").write_text(STAGES)
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    (tmp_path / "script.py").write_text(SCRIPT)
    return tmp_path


def _run_doc(project) -> dict:
    return json.loads((project / "arts" / "runs" / "r1" / "run.json").read_text())


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_ctrl_c_is_recorded_as_interrupted_and_names_the_resume_call(project, executor):
    proc = _interrupt(project, executor, "stop")
    assert proc.returncode == 0, proc.stderr
    notes = json.loads(proc.stdout.splitlines()[0])
    assert notes == [
        "run 'r1' interrupted by SIGINT: stopped at once after 1 of 4 steps; recorded as "
        "interrupted",
        "continue it with: sdk.run_pipeline('demo', run_id='r1', resume=True), or from a "
        "shell: runner run demo -m manifest.json --artifacts arts --resume --run-id r1"]
    doc = _run_doc(project)
    assert doc["status"] == "interrupted"
    assert doc["error"]["type"] == "RunInterruptedError"
    assert "interrupted by SIGINT" in doc["error"]["message"]
    assert doc["completed"] == ["demo[0]"]
    spans = [json.loads(line) for line in
             (project / "arts" / "runs" / "r1" / "spans.jsonl").read_text().splitlines()]
    statuses = {s["name"]: s["attributes"].get("runner.status") for s in spans}
    assert statuses["run demo"] == "interrupted"
    assert "failed" not in statuses.values(), statuses
    assert not (project / "arts" / "summaries").exists()  # no failure forensics

    # the command the note gives finishes the run
    command = shlex.split(notes[1].rpartition("from a shell: ")[2])
    assert command[0] == "runner"
    done = cli(*command[1:], "--json", cwd=project, env={"SLEEP": "0"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    assert _run_doc(project)["status"] == "succeeded"


def test_the_interpreter_stays_usable_and_resumes_the_run(project):
    proc = _interrupt(project, "threads", "again")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^resumed r1$", proc.stdout, re.M), proc.stdout + proc.stderr
    assert _run_doc(project)["status"] == "succeeded"
