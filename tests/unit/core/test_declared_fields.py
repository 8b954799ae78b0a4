"""What a researcher's stages declare is held to, at the command line: a folder with a
manifest and a ``my_stages.py``, the CLI in a subprocess.

A stage that declares ``writes`` and changes another field fails, naming itself, the
field and what it declares, on every executor and in parallel branches; a declared
read that no earlier step writes is refused by ``validate`` and ``run`` (exit 2, the
step and the field); stages that declare nothing run as they always did.
"""

from __future__ import annotations

import json

import pytest

from runner.manifest import format_path
from tests.unit.cli.test_user_errors import _block, cli

STAGES = '''\
"""A researcher's stages, with what they declare."""
import pandas as pd

from runner import stage


@stage("prices", writes=["feature_store"])
def prices(ctx):
    ctx.log("prices loaded")  # the log may always grow
    ctx.feature_store["close"] = [1.0, 2.0, 4.0]
    return ctx


@stage("signal", reads=["feature_store"], writes=["inference_outputs"])
def signal(ctx):
    ctx.inference_outputs["signal"] = ctx.feature_store["close"].pct_change()
    return ctx


@stage("sneaky", reads=["feature_store"], writes=["inference_outputs"])
def sneaky(ctx):
    ctx.inference_outputs["signal"] = ctx.feature_store["close"].diff()
    ctx.feature_store["close"] = ctx.feature_store["close"] * 2  # in place, not declared
    return ctx


@stage("renames", writes=["feature_store"])
def renames(ctx):
    ctx.run_id = "mine"  # replaced, not declared
    return ctx


@stage("rewrites_log", writes=["feature_store"])
def rewrites_log(ctx):
    ctx.audit_trail.clear()
    return ctx


@stage("needs_signal", reads=["inference_outputs"], writes=["feature_store"])
def needs_signal(ctx):
    ctx.feature_store["pos"] = ctx.inference_outputs["signal"] > 0
    return ctx


@stage("accumulates", reads=["feature_store"], writes=["feature_store"])
def accumulates(ctx):
    ctx.feature_store["one"] = 1.0
    return ctx


def free(ctx):
    """Declares nothing: may change anything, as before."""
    ctx.run_id = ctx.run_id + "-free"
    ctx.feature_store["free"] = 1.0
    return ctx
'''

MANIFEST = {
    "pipelines": {
        "good": {"steps": ["prices", "signal", "needs_signal", "free"]},
        "sneaky.line": {"steps": ["prices", "sneaky"]},
        "sneaky.branch": {"steps": ["prices", ["signal", ["accumulates", "sneaky"]]],
                          "merge": {"inference_outputs": "last_wins"}},
        "renames.line": {"steps": ["prices", "renames"]},
        "rewrites_log.line": {"steps": ["prices", "rewrites_log"]},
        "undeclared": {"steps": ["free", "prices", "free"]},
    },
    "stages": {name: f"my_stages:{name}" for name in (
        "prices", "signal", "sneaky", "renames", "rewrites_log", "needs_signal",
        "accumulates", "free")},
}

UNMET = {  # pipelines whose reads nothing provides
    "unmet": {"steps": ["prices", "needs_signal"]},
    "unmet.branch": {"steps": ["prices", ["signal", "needs_signal"]]},
}


@pytest.fixture
def project(tmp_path):
    (tmp_path / "my_stages.py").write_text(STAGES)
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    return tmp_path


def test_stages_that_keep_to_their_declarations_run_and_validate(project):
    assert cli("validate", "-m", "manifest.json", cwd=project).returncode == 0
    for pipeline in ("good", "undeclared"):
        proc = cli("run", pipeline, "-m", "manifest.json", "--json", cwd=project)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["status"] == "succeeded"


@pytest.mark.parametrize(("pipeline", "executor"), [
    ("sneaky.line", "inline"), ("sneaky.branch", "inline"), ("sneaky.branch", "threads"),
    ("sneaky.branch", "processes")])
def test_a_write_outside_the_declared_writes_fails_that_stage(project, pipeline, executor):
    proc = cli("run", pipeline, "-m", "manifest.json", "-e", executor, "--run-id", "w",
               cwd=project)
    assert proc.returncode == 1, proc.stderr
    block = _block(proc.stderr)
    assert block[0].startswith("error: stage 'sneaky' at "), block[0]
    assert block[0].endswith(
        "UndeclaredWriteError: stage 'sneaky' changed field 'feature_store' of the context, "
        "outside the writes it declares (writes=['inference_outputs']): add 'feature_store' "
        "to its writes, or leave it unchanged")
    assert block[1].startswith("  at my_stages.py line ") and "in sneaky" in block[1]
    assert "✗ sneaky" in proc.stderr and "✓ sneaky" not in proc.stderr
    info = json.loads((project / "data/artifacts/summaries/runs/w/error.json").read_text())
    assert info["stage"] == "sneaky" and info["exception_type"] == "UndeclaredWriteError"


@pytest.mark.parametrize(("pipeline", "field"), [("renames.line", "run_id"),
                                                 ("rewrites_log.line", "audit_trail")])
def test_a_replaced_field_or_a_rewritten_log_is_a_write_too(project, pipeline, field):
    proc = cli("run", pipeline, "-m", "manifest.json", cwd=project)
    assert proc.returncode == 1, proc.stderr
    assert f"changed field {field!r} of the context" in _block(proc.stderr)[0]


@pytest.mark.parametrize("pipeline", sorted(UNMET))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_read_no_earlier_step_writes_is_refused_before_anything_runs(
        project, pipeline, command):
    (project / "manifest.json").write_text(json.dumps(
        {**MANIFEST, "pipelines": {**MANIFEST["pipelines"], **UNMET}}))
    args = ["validate"] if command == "validate" else ["run", pipeline, "--run-id", "r"]
    proc = cli(*args, "-m", "manifest.json", cwd=project)
    assert proc.returncode == 2, proc.stderr
    step = format_path(("pipelines", pipeline, "steps", 1, *([] if pipeline == "unmet" else [1])))
    lines = proc.stderr.splitlines()
    assert lines[0] == "error: invalid pipeline in manifest.json:"
    assert f"  {step}: stage 'needs_signal' reads " \
           f"'inference_outputs', which no earlier step of pipeline '{pipeline}' writes" \
           in proc.stderr
    assert "Traceback" not in proc.stderr
    if command == "validate":  # every pipeline that misreads, each once
        assert len(lines) == 3
    else:
        assert len(lines) == 2
        assert not (project / "data/artifacts/runs/r").exists()  # nothing ran
