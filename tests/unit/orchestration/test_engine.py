"""The engine's contract, run over every executor in this process (inline, threads,
processes). What every executor, Ray included, must do alike is in
tests/unit/orchestration/test_executor_contract.py."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from runner.artifacts import ArtifactStore, StoreForensics, load_error_context
from runner.context import values_equal
from runner.errors import ContextCollisionError, StageFailedError, UsageError
from runner.orchestration.runner import DAGRunner
from tests.shapes import base_context, plan_for


def to_store(folder: Path) -> StoreForensics:
    """The artifact store's forensics writer on a local folder (no fallback)."""
    return StoreForensics(ArtifactStore(str(folder)), fallback=None)


def run(steps, executor, artifacts, context=None, **spec):
    runner = DAGRunner(plan_for(steps, **spec), executor=executor, forensics=to_store(artifacts))
    return runner.run(context if context is not None else base_context())


def test_sequence_passes_output_to_next(executor, artifacts):
    result = run(["log.a", "log.b", "log.c"], executor, artifacts)
    assert result.context.audit_trail == ["a", "b", "c"]
    assert [r.path for r in result.records] == ["p[0]", "p[1]", "p[2]"]
    assert all(r.status == "succeeded" and r.end >= r.start for r in result.records)


def test_group_merges_columns_and_audit_trail(executor, artifacts):
    result = run(["log.a", ["add.x", ["add.y", "log.b"], "add.z"], "log.c"], executor, artifacts)
    ctx = result.context
    assert list(ctx.feature_store.columns) == ["p", "x", "y", "z"]
    assert ctx.feature_store["y"].tolist() == [4.0, 5.0, 6.0]
    assert ctx.audit_trail[0] == "a" and ctx.audit_trail[-1] == "c"
    assert sorted(ctx.audit_trail) == ["a", "b", "c"]
    names = [r.name for r in result.records]
    assert names[-2:] == ["merge", "log.c"]
    assert {r.executor for r in result.records} == {executor}


def test_branches_run_in_worker_processes(artifacts):
    result = run([["pid", "pid"]], "processes", artifacts)
    pids = {line for line in result.context.audit_trail if line.startswith("pid:")}
    driver = {r.pid for r in result.records if r.name == "merge"}
    branch_pids = {r.pid for r in result.records if r.name == "pid"}
    assert pids and driver.isdisjoint(branch_pids)


def test_fork_isolation_in_place_mutation(executor, artifacts):
    root = base_context(table={"k": "original"})
    result = run([["mutate.inplace", "observe"]], executor, artifacts, context=root)
    ctx = result.context
    # the observing branch saw the pre-fork values, whatever ran first
    assert ctx.feature_store["seen"].tolist() == [1.0, 2.0, 3.0]
    assert ctx.notes == ["table=original"]
    # the mutating branch's own changes won the merge (it alone changed them)
    assert ctx.feature_store["p"].tolist() == [99.0, 2.0, 3.0]
    assert ctx.table == {"k": "mutated"}
    assert "mutated" in ctx.audit_trail
    # the pre-fork context (the root passed in) saw nothing
    assert root.feature_store["p"].tolist() == [1.0, 2.0, 3.0]
    assert root.audit_trail == [] and root.table == {"k": "original"}
    assert "seen" not in root.feature_store


def test_collision_names_field_and_branches(executor, artifacts):
    with pytest.raises(ContextCollisionError) as info:
        run([["value.1again", "value.2again"]], executor, artifacts)
    (collision,) = info.value.collisions
    assert collision.field == "value"
    # in declaration order, whatever order the branches completed in
    assert collision.branches == ("p[0][0] (value.1again)", "p[0][1] (value.2again)")
    assert info.value.exit_code == 1
    assert Path(info.value.error_context).exists()
    assert info.value.run_id and info.value.group == "p[0]"
    *branches, merged = [r.name for r in info.value.records]  # branches as they completed
    assert (sorted(branches), merged) == (["value.1again", "value.2again"], "merge")
    merge = info.value.__cause__  # the merge's error, before the run's was made from it
    assert isinstance(merge, ContextCollisionError) and merge.collisions == (collision,)
    assert (merge.run_id, merge.error_context) == ("", None)


def test_same_change_in_two_branches_is_no_collision(executor, artifacts):
    result = run([["value.1again", "value.1again"]], executor, artifacts)
    assert result.context.value == 1


def test_pipeline_merge_override(executor, artifacts):
    result = run([["value.1again", "value.2again"]], executor, artifacts,
                 merge={"value": "tests.shapes:mean_rule"})
    assert result.context.value == 1  # (1 + 2) // 2


def test_merge_adapter_replaces_builtin_merge(executor, artifacts):
    result = run(["log.a", ["value.1", "value.2"]], executor, artifacts,
                 merge_adapter="merge.pick")
    assert result.context.value == 2
    assert result.records[-1].name == "merge.pick"
    assert result.records[-1].kind == "merge"


def test_stage_failure_forensics(executor, artifacts):
    runner = DAGRunner(plan_for(["log.a", ["log.b", "fail"], "log.c"]),
                       executor=executor, forensics=to_store(artifacts), run_id="forensic-1")
    with pytest.raises(StageFailedError) as info:
        runner.run(base_context())
    error = info.value
    assert (error.stage, error.path, error.exc_type) == ("fail", "p[1][1]", "ValueError")
    assert error.message == "the model diverged"
    assert "raise ValueError" in error.traceback
    assert error.exit_code == 1
    expected = artifacts / "summaries" / "runs" / "forensic-1" / "error_context.pkl"
    assert error.error_context == str(expected)
    received = load_error_context(str(expected))
    # exactly as the failing stage received it: the fork after log.a, before its own edits
    assert received.audit_trail == ["a"]
    assert list(received.feature_store.columns) == ["p"]
    assert_frame_equal(received.feature_store, base_context().feature_store)
    info_doc = json.loads((expected.parent / "error.json").read_text())
    assert info_doc["stage"] == "fail" and info_doc["path"] == "p[1][1]"
    assert info_doc["exception_type"] == "ValueError"
    assert "the model diverged" in info_doc["traceback"]
    assert info_doc["time"]
    assert not any(r.name == "log.c" for r in error.records)
    assert [r.status for r in error.records if r.name == "fail"] == ["failed"]


def test_top_level_failure_keeps_exact_input(artifacts):
    root = base_context()
    with pytest.raises(StageFailedError) as info:
        DAGRunner(plan_for(["log.a", "fail"]), forensics=to_store(artifacts)).run(root)
    received = load_error_context(info.value.error_context)
    assert received.audit_trail == ["a"]
    assert "half_done" not in received.feature_store
    assert values_equal(received.table, root.table)
    # the live object was changed in place by the failing stage; the pickle was not
    assert root.audit_trail == ["a", "partial"]


def test_stage_returning_none_fails_clearly(artifacts):
    with pytest.raises(StageFailedError) as info:
        DAGRunner(plan_for(["returns.none"]), forensics=to_store(artifacts)).run(base_context())
    assert info.value.exc_type == "TypeError"
    assert "returned None" in info.value.message


def test_workspace_is_created_and_cleaned(artifacts, _workspaces):
    result = DAGRunner(plan_for(["workspace.write"]), forensics=to_store(artifacts),
                       run_id="ws-1").run(base_context())
    assert result.context.workspace == str(_workspaces / "ws-1")
    assert not (_workspaces / "ws-1").exists()


def test_failing_cleanup_never_hides_the_stage_error(artifacts, caplog):
    def broken_cleanup(run_id):
        raise OSError("disk on fire")

    runner = DAGRunner(plan_for(["fail"]), forensics=to_store(artifacts), cleanup=broken_cleanup)
    with pytest.raises(StageFailedError):
        runner.run(base_context())
    assert "disk on fire" in caplog.text


def test_trace_id_known_before_run(artifacts):
    runner = DAGRunner(plan_for(["log.a"]), forensics=to_store(artifacts))
    trace_id = runner.trace_id
    assert len(trace_id) == 32 and int(trace_id, 16)
    assert runner.run(base_context()).trace_id == trace_id


def test_tv_orch_parallel_selects_ray_or_else_processes(monkeypatch, artifacts):
    import importlib.util

    monkeypatch.setenv("TV_ORCH_PARALLEL", "1")
    runner = DAGRunner(plan_for([["log.a", "log.b"]]), forensics=to_store(artifacts))
    has_ray = importlib.util.find_spec("ray") is not None
    assert runner.executor.name == ("ray" if has_ray else "processes")
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else find(name, *a))
    runner = DAGRunner(plan_for([["log.a", "log.b"]]), forensics=to_store(artifacts))
    assert runner.executor.name == "processes"
    monkeypatch.setenv("TV_ORCH_PARALLEL", "0")
    assert DAGRunner(plan_for(["log.a"]), forensics=to_store(artifacts)).executor.name == "inline"


@pytest.mark.parametrize("bad", ["UPPER", "a/b", "../x", "-x", "x" * 64])
def test_invalid_run_id(bad, artifacts):
    with pytest.raises(UsageError, match="invalid run id"):
        DAGRunner(plan_for(["log.a"]), forensics=to_store(artifacts), run_id=bad)


def test_wrong_root_context_type(artifacts):
    with pytest.raises(UsageError, match="takes a ShapeContext"):
        DAGRunner(plan_for(["log.a"]), forensics=to_store(artifacts)).run(pd.DataFrame())


def test_nested_group_inside_a_branch(executor, artifacts):
    """A group inside a branch travels to the worker (rules and all) and merges there."""
    steps = [[["add.x", ["add.y", "add.z"]], "log.a"], "log.b"]
    result = run(steps, executor, artifacts, merge={"value": "last_wins"})
    ctx = result.context
    assert list(ctx.feature_store.columns) == ["p", "x", "y", "z"]
    assert sorted(ctx.audit_trail) == ["a", "b"]
    merges = [r for r in result.records if r.kind == "merge"]
    assert [m.path for m in merges] == ["p[0][0][1]:merge", "p[0]:merge"]


def test_without_a_forensics_writer_the_engine_writes_nothing(tmp_path, monkeypatch):
    """The engine holds no default path: a failure without a writer leaves no files."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StageFailedError) as info:
        DAGRunner(plan_for(["log.a", "fail"]), run_id="no-writer").run(base_context())
    assert info.value.error_context is None
    assert info.value.stage == "fail"
    assert not (tmp_path / "data").exists()
