"""Generated pipelines run through the step cache as the step loop will: cached runs end
with the same context as uncached ones, a re-run hits every step, and a change in an
input field or a stage's code re-runs exactly the steps whose inputs changed."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from runner.artifacts.store import ArtifactStore
from runner.cache.fields import field_digest
from runner.cache.keys import read_fields
from runner.cache.outputs import written_fields
from runner.cache.step_cache import StepCache
from runner.context import Context, MergeRule, Snapshot, fork_context
from runner.registry import StageEntry
from tests.unit.cache.stepping import step_through

FIELDS = ("a", "b", "c", "d")


def _frame(*values: float) -> pd.DataFrame:
    return pd.DataFrame({"v": [float(v) for v in values]})


class SimContext(Context):
    a: pd.DataFrame = Field(default_factory=lambda: _frame(1, 2))
    b: pd.DataFrame = Field(default_factory=lambda: _frame(3))
    c: pd.DataFrame = Field(default_factory=lambda: _frame(0))
    d: pd.DataFrame = Field(default_factory=lambda: _frame(0))
    notes: Annotated[list[str], MergeRule("append")] = Field(default_factory=list)


@dataclass(frozen=True)
class StageSpec:
    reads: tuple[str, ...]
    write: str
    n: int
    declared: bool


def _stage(spec: StageSpec) -> Callable[[Any], Any]:
    reads, write, n = spec.reads, spec.write, spec.n

    def run(context: Any) -> Any:
        total = sum(float(getattr(context, r)["v"].sum()) for r in reads)
        setattr(context, write, _frame((total * n) % 97, n, len(reads)))
        context.log(f"{write} <- {total:.3f}")
        return context

    return run


SPECS = st.builds(StageSpec, reads=st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3,
                                            unique=True).map(tuple),
                  write=st.sampled_from(FIELDS), n=st.integers(1, 5), declared=st.booleans())
PIPELINES = st.lists(SPECS, min_size=1, max_size=5)


def _entries(specs: list[StageSpec]) -> list[StageEntry]:
    return [StageEntry(f"s{i}", _stage(s), reads=frozenset(s.reads) if s.declared
                       else frozenset()) for i, s in enumerate(specs)]


def _run(entries: list[StageEntry], context: SimContext, cache: StepCache | None
         ) -> tuple[SimContext, list[str], list[dict[str, str]]]:
    """Run the steps (the cached path as the step loop will take it); the final context,
    the stages that ran and each step's input digests."""
    context, ran, inputs = fork_context(context), [], []
    for entry in entries:
        inputs.append({n: field_digest(getattr(context, n))
                       for n in read_fields(entry, context)})
        context, called = step_through(cache, entry, context)
        if called:
            ran.append(entry.name)
    return context, ran, inputs


def _digests(context: SimContext) -> dict[str, str]:
    return {n: field_digest(v) for n, v in context.__dict__.items()}


@settings(max_examples=25, deadline=None)
@given(PIPELINES, st.sampled_from(FIELDS), st.integers(0, 4), st.integers(6, 9))
def test_cached_runs_equal_uncached_and_rerun_exactly_what_changed(
        specs: list[StageSpec], field: str, edited_stage: int, new_n: int) -> None:
    entries = _entries(specs)
    start = SimContext(run_id="one")
    plain, _, plain_inputs = _run(entries, start, None)
    with tempfile.TemporaryDirectory() as root:
        cache = StepCache(ArtifactStore(root), runner_version="test")
        first, ran, _ = _run(entries, start, cache)
        assert _digests(first) == _digests(plain) and ran == [e.name for e in entries]
        again, ran_again, _ = _run(entries, SimContext(run_id="two"), cache)
        assert ran_again == []
        assert {k: v for k, v in _digests(again).items() if k != "run_id"} == \
            {k: v for k, v in _digests(plain).items() if k != "run_id"}

        # an input field changed: exactly the steps whose inputs differ run again
        changed_start = SimContext(run_id="three", **{field: _frame(42)})
        expected, _, inputs = _run(entries, changed_start, None)
        rerun = [e.name for e, old, new in zip(entries, plain_inputs, inputs, strict=True)
                 if old != new]
        got, ran_changed, _ = _run(entries, changed_start, cache)
        assert ran_changed == rerun
        assert _digests(got) == _digests(expected)

        # one stage's code changed: it runs, and the steps after it whose inputs changed
        index = edited_stage % len(specs)
        edited = list(specs)
        edited[index] = StageSpec(specs[index].reads, specs[index].write, new_n,
                                  specs[index].declared)
        edited_entries = _entries(edited)
        expected, _, inputs = _run(edited_entries, start, None)
        rerun = [e.name for i, (e, old, new) in enumerate(zip(edited_entries, plain_inputs,
                                                               inputs, strict=True))
                 if old != new or i == index]
        got, ran_edited, _ = _run(edited_entries, start, cache)
        assert ran_edited == rerun
        assert _digests(got) == _digests(expected)


def test_a_write_of_an_equal_value_is_an_output() -> None:
    """A stage that sets a field to the value it already holds still wrote it: on a hit,
    after an earlier step changed that field, the write must be restored."""
    context = SimContext(run_id="eq")
    before, held = Snapshot(context), dict(context.__dict__)
    context.d = _frame(0)  # equal to the default, but written
    context.c["v"] = [5.0]  # changed in place
    assert written_fields(held, before, context) == ["c", "d"]
