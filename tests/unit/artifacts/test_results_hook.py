"""Each step's ``ctx.log`` lines in results.json: given to the step that wrote them,
across parallel branches (the same line in two branches is each branch's), nested
groups and a merge adapter that logs its own line."""

from __future__ import annotations

import json
import uuid

import pytest

from runner.artifacts import ArtifactStore
from runner.artifacts.results import ResultsHook
from runner.context import field_rules
from runner.merge import BranchValue, merge_contexts
from runner.orchestration.runner import DAGRunner
from tests.shapes import REG, base_context, plan_for


def _merge_and_say(base, branches):
    values = [BranchValue(f"branch {i}", i, b) for i, b in enumerate(branches)]
    out = merge_contexts(base, values, field_rules(type(base)), group="say")
    out.log("merged")
    return out


if "merge.say" not in REG.names():
    REG.register("merge.say", _merge_and_say, kind="merge_adapter")


def _steps(steps, *, executor: str, **spec):
    store = ArtifactStore(f"memory://results-{uuid.uuid4().hex[:12]}")
    hook = ResultsHook(store)
    result = DAGRunner(plan_for(steps, **spec), executor=executor, hooks=[hook],
                       run_id="r-1").run(base_context())
    doc = json.loads(store.read_bytes("runs/r-1/results.json"))
    assert result.report is None  # ShapeContext has no report()
    return [(m["step"], m["messages"]) for m in doc["messages"]]


@pytest.mark.parametrize("executor", ["inline", "threads"])
def test_branches_logging_the_same_line_each_keep_it(executor):
    assert _steps(["log.a", ["log.b", "log.b"], "log.c"], executor=executor) == [
        ("log.a", ["a"]), ("log.b", ["b"]), ("log.b", ["b"]), ("log.c", ["c"])]


def test_a_merge_adapter_keeps_its_own_line():
    got = _steps(["log.a", ["log.b", "log.c"]], executor="threads", merge_adapter="merge.say")
    assert sorted(got[1:3]) == [("log.b", ["b"]), ("log.c", ["c"])]
    assert got[0] == ("log.a", ["a"]) and got[3] == ("merge.say", ["merged"])
    assert len(got) == 4


def test_nested_groups_give_each_line_once():
    got = _steps(["log.a", [["log.b", ["log.c", "log.c"]], "log.a"]], executor="threads")
    assert sorted(line for _, lines in got for line in lines) == ["a", "a", "b", "c", "c"]
    assert got[0] == ("log.a", ["a"])


def test_a_long_run_costs_each_step_its_own_lines():
    """Linear: 300 steps of one line each are 300 entries of one line."""
    got = _steps(["log.a"] * 300, executor="inline")
    assert got == [("log.a", ["a"])] * 300


def test_charts_are_an_object_of_their_own_stored_once_and_checked(tmp_path):
    from runner.artifacts import ArtifactStore, sweep_store
    from runner.artifacts.objects import ObjectStore, object_path
    from runner.artifacts.results import charts_object, read_results, write_results

    store = ArtifactStore(str(tmp_path / "store"), {})
    charts = {"equity": {"dates": [f"2024-01-{d:02d}" for d in range(1, 29)] * 20,
                         "columns": {"equity": [1.0 + i / 1000 for i in range(560)]}}}
    doc = {"format": 1, "report": None, "messages": [], "fields": [], "charts": charts}
    refs = [write_results(store, run, doc) for run in ("run-a", "run-b")]
    kept = [json.loads(store.read_bytes(f"runs/{run}/results.json")) for run in ("run-a", "run-b")]
    digests = {charts_object(k) for k in kept}
    assert len(digests) == 1 and None not in digests and "charts" not in kept[0]
    (digest,) = digests
    assert ObjectStore(store).digests() == [digest]  # two runs, one object
    assert all(ref["bytes"] < 400 for ref in refs)  # the file itself stays small
    back, note = read_results(store, "run-a", refs[0])
    assert note is None and back == doc
    # no run.json lists these results (written by hand here): nothing keeps the object
    # (tests/e2e/test_run_results.py: a real run's results keep theirs)
    swept = sweep_store(store, also_referenced=(), grace=0, dry_run=True)
    assert digest in swept.deleted
    # a swapped object: a note, never an exception
    store.write_bytes(object_path(digest), b"{}")
    back, note = read_results(store, "run-a", refs[0])
    assert back is not None and "charts" not in back
    assert note is not None and "does not match its digest" in note
