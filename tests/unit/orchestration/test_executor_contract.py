"""The executor contract, run on every executor: inline, threads, processes and Ray.

Each case runs one plan in a driver process (:mod:`.executor_driver`; Ray never runs
in the pytest process) on each executor, and the suite holds every executor to the
same outcome: identical merged results, a failing branch stops the group with its
own StepFailure, cancellation stops a sibling at its next step, a worker killed with
SIGKILL fails its branch clearly, and the driver's hooks hear every step and every
branch hook's payload. Ray joins the session's two-node cluster
(:func:`tests.raycluster.ray_cluster_fixture`).

Last, an executor written here, outside the package, from the exported names only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pandas.testing import assert_frame_equal

from runner.orchestration.executors import (
    BranchOutcome,
    Executor,
    GroupTask,
    execute_branch,
)
from runner.orchestration.runner import DAGRunner
from tests.raycluster import (
    child_env,
    ray_cluster_fixture,  # noqa: F401 -- the session's two-node cluster, "ray_cluster"
)
from tests.shapes import base_context, plan_for

ROOT = Path(__file__).resolve().parents[3]
EVERY = ["inline", "threads", "processes", pytest.param("ray", marks=pytest.mark.integration)]
ELSEWHERE = ["processes", pytest.param("ray", marks=pytest.mark.integration)]
"""Executors whose branches run in other processes (a worker there can be killed)."""


_RUNS: dict[tuple[str, str], dict[str, Any]] = {}


def drive(case: str, executor: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Run ``case`` on ``executor`` in a driver process (once per module); what it printed."""
    if (case, executor) in _RUNS:
        return _RUNS[case, executor]
    tmp = request.getfixturevalue("tmp_path_factory").mktemp(f"{case}-{executor}")
    env = child_env()
    if executor == "ray":
        env |= request.getfixturevalue("ray_cluster").env()
    proc = subprocess.run(
        [sys.executable, "-m", "tests.unit.orchestration.executor_driver", case, executor,
         str(tmp)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    _RUNS[case, executor] = out
    return out


@pytest.fixture(scope="module")
def inline_same(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The reference: the "same" case run inline, in this process's driver."""
    from tests.unit.orchestration.executor_driver import run

    return run("same", "inline", str(tmp_path_factory.mktemp("inline")))


@pytest.mark.parametrize("executor", EVERY)
def test_every_executor_merges_what_inline_merges(executor, request, inline_same):
    got = drive("same", executor, request)
    assert "error" not in got, got
    mine, theirs = got["context"], inline_same["context"]
    assert mine["feature_store"] == theirs["feature_store"]
    assert mine["value"] == theirs["value"] == 1
    assert sorted(mine["audit_trail"]) == sorted(theirs["audit_trail"]) == ["a", "b", "c", "c"]
    paths = [r["path"] for r in got["records"]]
    assert sorted(paths) == sorted(r["path"] for r in inline_same["records"])
    assert {r["executor"] for r in got["records"]} == {executor}
    merges = [r["path"] for r in got["records"] if r["kind"] == "merge"]
    assert merges == ["p[1][1][0]:merge", "p[1]:merge", "p[2]:merge"]
    if executor in ("processes", "ray"):
        branch_pids = {r["pid"] for r in got["records"] if r["branch"]}
        assert got["driver_pid"] not in branch_pids


@pytest.mark.parametrize("executor", EVERY)
def test_hooks_hear_every_step_and_branch_hooks_report_back(executor, request):
    got = drive("same", executor, request)
    heard = got["heard"]
    stages = sorted(r["path"] for r in got["records"] if r["kind"] == "stage")
    # every record reached the driver's on_step_end: live, or when its branch returned
    assert sorted(heard["ended"]) == sorted(r["path"] for r in got["records"])
    # every stage start was heard once: by the driver's hook here, or by the branch hook
    # that travelled with its branch and sent its payload back
    assert sorted(heard["started"] + heard["payloads"]) == stages
    remote = executor in ("processes", "ray")
    assert bool(heard["payloads"]) is remote
    assert all(ok for _, ok in heard["branch_ends"])
    # the driver hears each of its groups' branches end; a group nested in a branch is
    # heard where that branch runs (by the driver only when it runs here)
    nested = [] if remote else ["p[1][1][0][0]", "p[1][1][0][1]"]
    assert sorted(p for p, _ in heard["branch_ends"]) == sorted(
        ["p[1][0]", "p[1][1]", "p[1][2]", "p[2][0]", "p[2][1]", *nested])


@pytest.mark.parametrize("executor", EVERY)
def test_a_failing_branch_stops_the_group_with_its_step_failure(executor, request):
    got = drive("fail", executor, request)
    error = got["error"]
    assert (error["stage"], error["path"], error["exc_type"]) == ("fail", "p[1][1]", "ValueError")
    assert error["message"] == "the model diverged"
    assert error["exit_code"] == 1
    # forensics keep the input exactly as the failing stage received it
    assert error["received_trail"] == ["a"]
    assert error["received_columns"] == ["p"]
    ran = [r["name"] for r in got["records"]]
    assert "log.c" not in ran
    assert [r["status"] for r in got["records"] if r["name"] == "fail"] == ["failed"]


@pytest.mark.parametrize("executor", EVERY)
def test_a_failure_cancels_the_rest_of_the_group(executor, request):
    """After a failure nothing new starts; a branch in flight finishes its step only."""
    got = drive("cancel", executor, request)
    assert got["error"]["stage"] == "fail"
    ran = [r["name"] for r in got["records"]]
    assert "log.c" not in ran and "log.b" not in ran
    if executor == "inline":
        assert "wait.cancel" not in ran  # the failing branch came first: its sibling never began
    else:
        assert "wait.cancel" in ran  # in flight: allowed to finish its step


@pytest.mark.parametrize("executor", ELSEWHERE)
def test_a_worker_killed_fails_its_branch_clearly(executor, request):
    """Inline and threads run branches in the driver's own process: there, a SIGKILL
    ends the run itself, so only executors with workers are held to this."""
    got = drive("die", executor, request)
    error = got["error"]
    assert error["path"] == "p[1][1]" and error["stage"] == "die.now"
    assert error["exit_code"] == 1
    assert "died" in error["message"]
    assert error["received_columns"] == ["p"]
    assert "log.c" not in [r["name"] for r in got["records"]]


# ---------------------------------------------------------------- an executor from outside


class LastFirstExecutor(Executor):
    """Written from the exported names only: branches in reverse declaration order,
    in this process."""

    name = "last-first"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def run_branches(self, group: GroupTask) -> Iterator[BranchOutcome]:
        for task in reversed(group.tasks):
            if group.cancel.is_set():
                return
            self.seen.append(task.branch.path)
            yield execute_branch(task, group.cancel, group.hooks, executor=self.name)


def test_an_executor_written_outside_the_package_runs_a_pipeline(tmp_path):
    steps = ["log.a", ["add.x", [["add.y", "log.b"], "log.c"], "add.z"], "log.c"]
    mine = LastFirstExecutor()
    got = DAGRunner(plan_for(steps), executor=mine, workspace_root=tmp_path).run(base_context())
    want = DAGRunner(plan_for(steps), workspace_root=tmp_path).run(base_context())
    assert mine.seen == ["p[1][2]", "p[1][1]", "p[1][0]"]
    assert_frame_equal(got.context.feature_store, want.context.feature_store)
    assert sorted(got.context.audit_trail) == sorted(want.context.audit_trail)
    assert {r.executor for r in got.records} == {"last-first"}
