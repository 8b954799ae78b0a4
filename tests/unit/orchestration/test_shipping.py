"""What crosses to worker processes and back: the group's context pickled once for
all its branches, and only the fields a branch changed sent back."""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd
import pytest

from runner.context import fork_context
from runner.orchestration.executors.shipping import (
    SAME,
    detached,
    restore_untouched,
    strip_untouched,
)
from runner.orchestration.runner import DAGRunner
from tests.shipping_stages import PickleProbe, big_context, shipping_plan


def run(steps, executor: str, tmp: Path):
    return DAGRunner(shipping_plan(steps), executor=executor,
                     workspace_root=tmp / "w").run(big_context())


def test_the_driver_pickles_a_groups_context_once_for_all_its_branches(tmp_path):
    before = PickleProbe.pickled
    result = run([["ship.reader", "ship.reader2", "ship.adder"]], "processes", tmp_path)
    assert PickleProbe.pickled - before == 1  # three branches, one pickle
    assert {r.pid for r in result.records if r.branch} - {r.pid for r in result.records
                                                           if not r.branch}


@pytest.mark.parametrize("steps", [
    [["ship.reader", "ship.writer"]],  # one branch writes into the frame in place
    [["ship.reader", "ship.adder"]],   # one adds a column
    [["ship.reader", "ship.reader2"]],  # none changes it
])
def test_processes_give_the_inline_result_whatever_the_branches_do_to_a_frame(steps,
                                                                             tmp_path):
    inline = run(steps, "inline", tmp_path / "i").context
    workers = run(steps, "processes", tmp_path / "p").context
    pd.testing.assert_frame_equal(workers.feature_store, inline.feature_store)
    assert workers.audit_trail == inline.audit_trail


def received_by_a_worker():
    return pickle.loads(pickle.dumps(big_context()))


def test_an_untouched_frame_goes_back_as_same_and_the_driver_puts_its_own_back():
    sent = big_context()
    received = received_by_a_worker()
    branch = fork_context(received)
    branch.log("read only")
    back = pickle.loads(pickle.dumps(strip_untouched(branch, received)))
    assert back.feature_store is SAME
    restored = restore_untouched(back, sent)
    assert restored.feature_store is sent.feature_store  # the merge sees it unchanged
    assert restored.audit_trail == ["read only"]


@pytest.mark.parametrize("change", [
    lambda f: f.__setitem__("x", f["x"] + 1),
    lambda f: f.iloc.__setitem__((0, 0), -1.0),
    lambda f: f.__setitem__("y", 1.0),
])
def test_a_frame_the_branch_changed_goes_back_whole(change):
    received = received_by_a_worker()
    branch = fork_context(received)
    change(branch.feature_store)
    stripped = strip_untouched(branch, received)
    assert isinstance(stripped.feature_store, pd.DataFrame)
    assert not stripped.feature_store.equals(received.feature_store)
    assert received.feature_store["x"].iloc[0] == 0.0  # the fork's write never reached it


def large_context():
    """Over :data:`SHARED_FROM` pickled: handed to the workers through shared memory."""
    import numpy as np

    rows = 400_000
    frame = pd.DataFrame({"x": np.arange(rows, dtype="float64")},
                         index=pd.RangeIndex(rows, name="row"))
    return big_context().model_copy(update={"feature_store": frame})


def test_a_large_context_is_handed_to_the_workers_through_one_segment_removed_after():
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from runner.orchestration.executors.handoff import SHARED_FROM, handed_off

    sent = large_context()
    assert len(pickle.dumps(sent, protocol=pickle.HIGHEST_PROTOCOL)) > SHARED_FROM
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool, \
            handed_off(sent) as shipped:
        assert shipped.data is None  # each call carries the segment's name only
        assert shipped.segment is not None
        segment = Path("/dev/shm") / shipped.segment
        assert segment.stat().st_size == shipped.size
        received = list(pool.map(type(shipped).load, [shipped, shipped]))
    assert not segment.exists()  # removed once the group's dispatch ended
    for got in received:
        pd.testing.assert_frame_equal(got.feature_store, sent.feature_store)


def test_a_small_context_goes_with_each_call():
    from runner.orchestration.executors.handoff import handed_off

    with handed_off(big_context()) as shipped:
        assert shipped.segment is None
        assert shipped.data is not None
        pd.testing.assert_frame_equal(shipped.load().feature_store,
                                      big_context().feature_store)


@pytest.mark.parametrize("steps", [
    [["ship.reader", "ship.writer"]],
    [["ship.reader", "ship.adder"]],
])
def test_processes_give_the_inline_result_with_a_context_in_shared_memory(steps, tmp_path):
    def run_large(executor: str, tmp: Path):
        return DAGRunner(shipping_plan(steps), executor=executor,
                         workspace_root=tmp / "w").run(large_context())

    inline = run_large("inline", tmp_path / "i").context
    workers = run_large("processes", tmp_path / "p").context
    pd.testing.assert_frame_equal(workers.feature_store, inline.feature_store)
    assert workers.audit_trail == inline.audit_trail


def test_detached_copies_what_the_worker_sent_and_keeps_the_drivers_own() -> None:
    """After a run's last group its outcomes are detached from the transport: every field
    that is not the driver's own object becomes a copy this process owns (an array
    read in place from Ray's store is read-only: the copy is writeable)."""
    sent = big_context()
    back = fork_context(sent)
    kept = sent.__dict__["feature_store"]
    back.__dict__["feature_store"] = kept  # restored: the driver's own object
    column = pd.Series([1.0, 2.0, 3.0]).to_numpy().copy()
    column.flags.writeable = False  # as Ray hands back an array it maps zero-copy
    back.__dict__["probe"] = {"forecast": column}
    out = detached(back, sent)
    assert out.__dict__["feature_store"] is kept
    forecast = out.__dict__["probe"]["forecast"]
    assert forecast is not column and forecast.flags.writeable
    assert forecast.tolist() == [1.0, 2.0, 3.0]

