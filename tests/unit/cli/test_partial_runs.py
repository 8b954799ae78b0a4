"""Runs from any step and up to one, from the command line (real subprocesses):
``--from S --origin R`` ends with the context a whole run ends with, ``--to S`` stops
after S and says so, and every refusal is one line, exit 2, no traceback."""

from __future__ import annotations

import json

import pytest

from runner.artifacts import ArtifactStore, load_checkpoint, read_run
from runner.context import values_equal
from runner.sdk import QuantSDK
from tests.unit.cli.test_cli import MANIFEST, cli

PARTIAL = {**MANIFEST, "pipelines": {
    **MANIFEST["pipelines"],
    "three": {"steps": ["log.a", "fail", "log.b"], "context": "tests.shapes:ShapeContext"},
}}


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(PARTIAL))
    return path


def final_context(root, manifest, run_id):
    """The context of a run's last main-line checkpoint, as the store keeps it."""
    store = ArtifactStore(str(root / "data/artifacts"))
    doc = read_run(store, run_id)
    plan = QuantSDK(manifest).plan(doc.pipeline)
    last = [c for c in doc.checkpoints if c.kind == "step"][-1]
    return load_checkpoint(store, run_id, last, types=plan.context_types()), doc


def same_data(a, b) -> bool:
    """Equal contexts but for what names the run (its id and scratch folder)."""
    left, right = dict(a.__dict__), dict(b.__dict__)
    for name in ("run_id", "workspace"):
        left.pop(name, None), right.pop(name, None)
    return left.keys() == right.keys() and all(values_equal(left[k], right[k]) for k in left)


@pytest.mark.parametrize("start", ["log.b", "ok[2]", "parallel[2]", "ok[1]"])
def test_a_run_from_a_step_ends_as_the_whole_run_does(manifest, tmp_path, start):
    assert cli("run", "ok", "-m", manifest, "-q", "--run-id", "whole", cwd=tmp_path
               ).returncode == 0
    proc = cli("run", "ok", "-m", manifest, "--json", "--run-id", "part", "--from", start,
               "--origin", "whole", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    first = "log.b" if start in ("log.b", "ok[2]") else "add.x"
    assert out["steps"][0]["name"] in (first, "add.y")  # branches end in any order
    assert "log.a" not in [s["name"] for s in out["steps"]]
    assert out["partial"] == {"origin": "whole", "from_step": "ok[2]" if first == "log.b"
                              else "ok[1]", "to_step": None}
    whole, _ = final_context(tmp_path, manifest, "whole")
    part, doc = final_context(tmp_path, manifest, "part")
    assert same_data(whole, part)
    assert part.run_id == "part"
    assert doc.status == "succeeded" and doc.partial is not None
    assert doc.partial.origin == "whole" and doc.partial.checkpoint.startswith("steps/")
    assert doc.completed == ["ok[0]", "ok[1]", "ok[2]"]


def test_a_run_to_a_step_stops_after_it_and_says_so(manifest, tmp_path):
    proc = cli("run", "ok", "-m", manifest, "--run-id", "upto", "--to", "parallel[2]",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "stopping after ok[1] (--to)" in proc.stderr
    assert "stopped after ok[1] as --to asked" in proc.stderr
    ctx, doc = final_context(tmp_path, manifest, "upto")
    assert doc.status == "succeeded" and doc.completed == ["ok[0]", "ok[1]"]
    assert doc.partial is not None and doc.partial.to_step == "ok[1]"
    assert ctx.audit_trail == ["a"]  # log.b did not run
    # and a later run continues from it to the end, like the whole run
    assert cli("run", "ok", "-m", manifest, "-q", "--run-id", "rest", "--from", "log.b",
               "--origin", "upto", cwd=tmp_path).returncode == 0
    assert cli("run", "ok", "-m", manifest, "-q", "--run-id", "whole", cwd=tmp_path
               ).returncode == 0
    assert same_data(final_context(tmp_path, manifest, "rest")[0],
                     final_context(tmp_path, manifest, "whole")[0])


def test_to_inside_a_nested_pipeline_and_from_and_to_together(manifest, tmp_path):
    main = [s.path for s in QuantSDK(manifest).plan("outer").main_line()]
    assert cli("run", "outer", "-m", manifest, "-q", "--run-id", "o", cwd=tmp_path
               ).returncode == 0
    proc = cli("run", "outer", "-m", manifest, "--json", "--run-id", "mid", "--from", main[1],
               "--origin", "o", "--to", main[2], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = [s["name"] for s in json.loads(proc.stdout)["steps"]]
    assert sorted(names) == ["add.x", "add.y", "log.b", "merge"]
    _, doc = final_context(tmp_path, manifest, "mid")
    assert doc.partial.from_step == main[1] and doc.partial.to_step == main[2]


REFUSALS = [
    (["--from", "log.c", "--origin", "good"], "no such step in pipeline 'ok' (did you mean"),
    (["--from", "add.x", "--origin", "good"], "is inside a parallel group"),
    (["--to", "add.y"], "is inside a parallel group"),
    (["--from", "log.a", "--origin", "good"], "is the first step"),
    (["--from", "log.b"], "--from STEP and --origin RUN_ID go together"),
    (["--origin", "good"], "--from STEP and --origin RUN_ID go together"),
    (["--from", "log.b", "--origin", "gone"], "--origin: no run 'gone' in"),
    (["--from", "log.b", "--origin", "Bad_Id"], "invalid run id 'Bad_Id'"),
    (["--from", "log.b", "--origin", "other"], "ran pipeline 'three', not 'ok'"),
    (["--from", "log.b", "--origin", "good", "--to", "log.a"], "comes after --to"),
    (["--from", "log.b", "--origin", "good", "--param", "x=1"], "--param and --data do not"),
]


@pytest.fixture(scope="module")
def origins(tmp_path_factory):
    """A folder with the manifest and two runs: ``good`` (of ok) and ``other`` (of three,
    failed); what the refusals refuse to start from (they write nothing)."""
    root = tmp_path_factory.mktemp("origins")
    (root / "manifest.json").write_text(json.dumps(PARTIAL))
    assert cli("run", "ok", "-m", "manifest.json", "-q", "--run-id", "good", cwd=root
               ).returncode == 0
    cli("run", "three", "-m", "manifest.json", "-q", "--run-id", "other", cwd=root)
    return root


@pytest.mark.parametrize(("args", "message"), REFUSALS)
def test_refusals_are_one_line_exit_2(origins, args, message):
    proc = cli("run", "ok", "-m", "manifest.json", *args, cwd=origins)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    # refused before a run id is taken: no run folder (not even a lease) is left behind
    assert sorted(p.name for p in (origins / "data/artifacts/runs").iterdir()) == [
        "good", "other"]


def test_an_origin_that_did_not_reach_the_checkpoint_or_another_manifest(manifest, tmp_path):
    assert cli("run", "three", "-m", manifest, "-q", "--run-id", "failed", cwd=tmp_path
               ).returncode == 1
    proc = cli("run", "three", "-m", manifest, "--from", "log.b", "--origin", "failed",
               cwd=tmp_path)
    assert proc.returncode == 2
    assert "did not reach the checkpoint after three[1]" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert cli("run", "ok", "-m", manifest, "-q", "--run-id", "old", cwd=tmp_path
               ).returncode == 0
    edited = json.loads(json.dumps(PARTIAL))
    edited["pipelines"]["ok"]["description"] = "edited"
    manifest.write_text(json.dumps(edited))
    proc = cli("run", "ok", "-m", manifest, "--from", "log.b", "--origin", "old", cwd=tmp_path)
    assert proc.returncode == 2 and "another version of the manifest" in proc.stderr
    assert "Traceback" not in proc.stderr
    forced = cli("run", "ok", "-m", manifest, "-q", "--from", "log.b", "--origin", "old",
                 "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr


def test_a_name_the_main_line_has_twice_is_named_by_path(manifest, tmp_path):
    proc = cli("run", "outer", "-m", manifest, "--to", "log.a", cwd=tmp_path)
    assert proc.returncode == 2
    assert "runs it 2 times; name one by its path" in proc.stderr


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_partial_runs_on_parallel_executors(manifest, tmp_path, executor):
    """The slice and the start are the plan's and the engine's own: any executor runs them."""
    assert cli("run", "ok", "-m", manifest, "-q", "--run-id", "whole", cwd=tmp_path
               ).returncode == 0
    proc = cli("run", "ok", "-m", manifest, "--json", "-e", executor, "--run-id", "part",
               "--from", "parallel[2]", "--origin", "whole", "--to", "parallel[2]",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    steps = json.loads(proc.stdout)["steps"]
    assert sorted(s["name"] for s in steps) == ["add.x", "add.y", "merge"]
    assert {s["executor"] for s in steps} == {executor}
    ctx, doc = final_context(tmp_path, manifest, "part")
    assert doc.partial.from_step == doc.partial.to_step == "ok[1]"
    assert set(ctx.feature_store) >= {"x", "y"} and ctx.audit_trail == ["a"]
