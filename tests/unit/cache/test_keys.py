"""A step's key changes exactly when something the step can see changes: a field it
reads, its code, the context type; never for the run's id or a field it does not read."""

from __future__ import annotations

from typing import Any

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from runner.cache.keys import CACHE_FORMAT, explain, read_fields, step_key
from runner.context import SelectionContext
from runner.registry import StageEntry


class FrameContext(SelectionContext):
    table: pd.DataFrame = Field(default_factory=pd.DataFrame)
    note: str = ""


class WiderContext(FrameContext):
    extra: int = 0


def reader(context: Any) -> Any:
    return context


def other_reader(context: Any) -> Any:
    return context.universe


DECLARED = StageEntry("t.declared", reader, reads=frozenset({"table", "params"}))
UNDECLARED = StageEntry("t.undeclared", reader)

VALUES = st.fixed_dictionaries({
    "universe": st.lists(st.sampled_from(["A", "B", "C"]), max_size=3),
    "params": st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 3), max_size=2),
    "table": st.lists(st.floats(-5, 5), min_size=1, max_size=5).map(
        lambda xs: pd.DataFrame({"v": xs})),
    "note": st.text(max_size=3),
})


def _context(values: dict[str, Any], run_id: str = "r1") -> FrameContext:
    return FrameContext(run_id=run_id, workspace=f"/tmp/{run_id}", **values)


@settings(max_examples=40, deadline=None)
@given(VALUES, VALUES)
def test_key_changes_iff_a_read_field_changes(a: dict[str, Any], b: dict[str, Any]) -> None:
    left, right = _context(a, "r1"), _context(b, "r2")
    same_table = a["table"]["v"].to_numpy().tobytes() == b["table"]["v"].to_numpy().tobytes()
    # a dict in its own order (a stage may iterate over it); bits: 0.0 and -0.0 differ
    same_reads = list(a["params"].items()) == list(b["params"].items()) and same_table
    assert (step_key(DECLARED, left).key == step_key(DECLARED, right).key) == same_reads
    same_all = same_reads and a["universe"] == b["universe"] and a["note"] == b["note"]
    assert (step_key(UNDECLARED, left).key == step_key(UNDECLARED, right).key) == same_all


def test_the_run_identity_is_not_an_input() -> None:
    values = {"universe": ["A"], "params": {"x": 1}, "table": pd.DataFrame({"v": [1.0]})}
    assert "run_id" not in read_fields(UNDECLARED, _context(values))
    assert step_key(UNDECLARED, _context(values, "one")).key == \
        step_key(UNDECLARED, _context(values, "two")).key


def test_logs_are_not_undeclared_inputs_but_count_when_declared() -> None:
    values = {"universe": ["A"], "params": {"x": 1}, "table": pd.DataFrame({"v": [1.0]})}
    one, two = _context(values), _context(values)
    one.audit_trail.extend(["branch a done", "branch b done"])
    two.audit_trail.extend(["branch b done", "branch a done"])  # branches finished the other way
    assert "audit_trail" not in read_fields(UNDECLARED, one)
    assert step_key(UNDECLARED, one).key == step_key(UNDECLARED, two).key
    reads_log = StageEntry("t.log", reader, reads=frozenset({"audit_trail"}))
    assert step_key(reads_log, one).key != step_key(reads_log, two).key


def test_code_stage_and_context_type_count() -> None:
    values = {"universe": ["A"], "params": {"x": 1}, "table": pd.DataFrame({"v": [1.0]})}
    base = step_key(DECLARED, _context(values))
    renamed = StageEntry("t.renamed", reader, reads=DECLARED.reads)
    other_code = StageEntry("t.declared", other_reader, reads=DECLARED.reads)
    versioned = StageEntry("t.declared", reader, reads=DECLARED.reads, version="v2")
    wider = WiderContext(run_id="r1", **values)
    keys = {base.key, step_key(renamed, _context(values)).key,
            step_key(other_code, _context(values)).key,
            step_key(versioned, _context(values)).key, step_key(DECLARED, wider).key}
    assert len(keys) == 5
    assert base.inputs.format == CACHE_FORMAT


def test_known_digests_are_trusted() -> None:
    values = {"universe": ["A"], "params": {"x": 1}, "table": pd.DataFrame({"v": [1.0]})}
    context = _context(values)
    computed = step_key(DECLARED, context)
    given_ = step_key(DECLARED, context, known=dict(computed.inputs.fields))
    assert given_ == computed


def test_explain_names_what_changed() -> None:
    values = {"universe": ["A"], "params": {"x": 1}, "table": pd.DataFrame({"v": [1.0]})}
    old = step_key(DECLARED, _context(values)).inputs.as_json()
    changed = step_key(DECLARED, _context({**values, "params": {"x": 2}})).inputs
    assert explain(old, changed) == ["input params changed"]
    code = step_key(StageEntry("t.declared", other_reader, reads=DECLARED.reads),
                    _context(values)).inputs
    assert explain(old, code) == ["its code changed"]
    wider = step_key(StageEntry("t.declared", reader, reads=frozenset({"table", "params",
                                                                       "note"})),
                     _context(values)).inputs
    assert explain(old, wider) == ["it now reads note"]
    assert explain(None, changed) == ["never run with the cache"]
    assert explain(old, step_key(DECLARED, _context(values)).inputs) == ["same inputs"]
