"""Partial runs in the plan: every main-line step is found by its path (and by its name
when the main line has it once), a step inside a branch never is, and a plan cut after
a step keeps exactly the main line up to it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.errors import UsageError
from runner.orchestration.plan.slicing import find_main_step, partial_run, slice_to
from tests.shapes import plan_for

STAGES = ["log.a", "log.b", "log.c", "add.x", "add.y"]

step = st.sampled_from(STAGES)
group = st.lists(st.lists(step, min_size=1, max_size=2).map(
    lambda b: b if len(b) > 1 else b[0]), min_size=2, max_size=3)
steps = st.lists(st.one_of(step, group), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(steps)
def test_every_main_line_step_is_found_and_cut_after(shape):
    plan = plan_for(shape)
    main = plan.main_line()
    names = [s.name for s in main]
    for i, s in enumerate(main):
        assert find_main_step(plan, s.path, option="--to") == i
        if names.count(s.name) == 1:
            assert find_main_step(plan, s.name, option="--to") == i
        else:
            with pytest.raises(UsageError, match="name one by its path"):
                find_main_step(plan, s.name, option="--to")
        cut = slice_to(plan, s.path)
        assert [t.path for t in cut.main_line()] == [t.path for t in main[: i + 1]]
    paths = {s.path for s in main}
    for inner in plan.walk():
        if inner.path not in paths:
            with pytest.raises(UsageError, match="inside a parallel group"):
                find_main_step(plan, inner.path, option="--from")


def test_partial_run_takes_the_steps_before_from_as_done():
    plan = plan_for(["log.a", ["add.x", "add.y"], "log.b", "log.c"])
    part = partial_run(plan, from_step="log.b", origin="r1", to_step="log.b")
    assert part is not None
    assert part.done == ("p[0]", "p[1]") and part.from_step == part.to_step == "p[2]"
    assert [s.name for s in part.plan.main_line()][-1] == "log.b"
    assert part.record("steps/002-merge") == {"origin": "r1", "checkpoint": "steps/002-merge",
                                              "from_step": "p[2]", "to_step": "p[2]"}
    assert partial_run(plan) is None


@given(st.text(max_size=20))
def test_any_unknown_name_is_a_usage_error(name):
    plan = plan_for(["log.a", ["add.x", "add.y"], "log.b"])
    if name in {s.name for s in plan.walk()} | {s.path for s in plan.walk()}:
        return
    with pytest.raises(UsageError, match="no such step"):
        find_main_step(plan, name, option="--to")
