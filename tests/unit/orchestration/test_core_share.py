"""A stage's core share: what it may keep busy now, growing as its neighbours finish."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from runner.context import Context
from runner.orchestration.native_threads import (
    available_cpus,
    core_share,
    map_on_cores,
    sharing_cores,
)
from runner.orchestration.runner import DAGRunner
from tests.thread_stages import reports, thread_plan

CPUS = available_cpus()


def run_share_group(executor: str, tmp: Path, *, grows: bool) -> dict[str, dict[str, Any]]:
    plan = thread_plan([["threads.share_short", "threads.share_long"]])
    ctx = Context(audit_trail=[f"handshake:{tmp / 'long-has-read'}",
                               *(["expect growth"] if grows else [])])
    result = DAGRunner(plan, executor=executor, workspace_root=tmp / "w").run(ctx)
    return reports(result.context)


@pytest.mark.skipif(CPUS < 2, reason="one CPU: every share is 1")
def test_on_processes_a_branch_gets_the_cores_its_finished_neighbour_leaves(tmp_path):
    got = run_share_group("processes", tmp_path, grows=True)
    assert got["threads.share_long"]["shares"] == [CPUS // 2, CPUS]
    assert got["threads.share_short"]["share"] == CPUS // 2


def test_on_threads_a_branch_keeps_its_share(tmp_path):
    got = run_share_group("threads", tmp_path, grows=False)
    share = max(1, CPUS // 2)
    assert got["threads.share_short"]["share"] == share
    assert got["threads.share_long"]["shares"] == [share, share]


def test_outside_any_group_a_stage_has_the_machine_or_what_omp_num_threads_says(
        monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert core_share() == CPUS
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # as Ray and Dask tell a task
    assert core_share() == 3
    with sharing_cores(lambda: 5):
        assert core_share() == 5
    with sharing_cores(lambda: 0):
        assert core_share() == 1  # never none


def test_map_on_cores_keeps_the_order_and_runs_on_one_thread_at_a_share_of_one():
    where: list[str] = []

    def square(i: int) -> int:
        where.append(threading.current_thread().name)
        return i * i

    with sharing_cores(lambda: 1):
        assert map_on_cores(square, range(20)) == [i * i for i in range(20)]
    assert set(where) == {threading.current_thread().name}
    assert map_on_cores(square, []) == []


@pytest.mark.skipif(CPUS < 2, reason="one CPU: one thread")
def test_map_on_cores_takes_more_threads_when_the_share_grows():
    """Two calls can only both pass the barrier if they run at the same time: they
    start once the share has grown from 1 to 2."""
    share = [1]
    barrier = threading.Barrier(2, timeout=60)  # a safety bound, not a timing

    def call(i: int) -> str:
        if i == 0:
            share[0] = 2  # a neighbour finished
        if i in (1, 2):
            barrier.wait()
        return threading.current_thread().name

    with sharing_cores(lambda: share[0]):
        names = map_on_cores(call, range(4))
    assert len(set(names[1:3])) == 2


def test_map_on_cores_raises_the_first_error_and_starts_nothing_after_it():
    started: list[int] = []

    def call(i: int) -> int:
        started.append(i)
        if i == 3:
            raise ValueError("fit 3 failed")
        return i

    with sharing_cores(lambda: 1), pytest.raises(ValueError, match="fit 3 failed"):
        map_on_cores(call, range(10))
    assert started == [0, 1, 2, 3]
