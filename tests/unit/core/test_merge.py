"""Merging parallel branches: the built-in rules, collisions, fork isolation,
content equality and snapshots."""

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal
from pydantic import Field

from runner.context import (
    Context,
    SelectionContext,
    Snapshot,
    field_rules,
    fork_context,
    values_equal,
)
from runner.errors import Collision, ContextCollisionError, ExecutionError
from runner.merge import BranchValue, merge_contexts

RESOLVE = ("  resolve it with a per-pipeline rule (\"merge\": {FIELD: \"last_wins\"|...}) "
           "or a merge_adapter")


class Ctx(Context):
    """Four fields with rule 'error': a scalar, a list, a dict and a frame."""

    num: int = 0
    items: list[int] = Field(default_factory=list)
    mapping: dict[str, Any] = Field(default_factory=dict)
    frame: pd.DataFrame = Field(default_factory=pd.DataFrame)


RULES = field_rules(Ctx)
ERROR_FIELDS = ("num", "items", "mapping", "frame")


def test_field_rules_of_the_test_context() -> None:
    assert RULES == {
        "run_id": "error", "workspace": "error", "audit_trail": "append",
        "feature_store": "concat_columns", "inference_outputs": "concat_columns",
        "num": "error", "items": "error", "mapping": "error", "frame": "error",
    }


def branch(base: Any, index: int, mutate: Callable[[Any], Any] | None = None,
           label: str | None = None) -> BranchValue:
    """Fork ``base``, let ``mutate`` change the fork in place, wrap it as branch ``index``."""
    ctx = fork_context(base)
    if mutate is not None:
        mutate(ctx)
    return BranchValue(label if label is not None else f"g[{index}]", index, ctx)


def setting(**values: Any) -> Callable[[Any], None]:
    def mutate(ctx: Any) -> None:
        for name, value in values.items():
            setattr(ctx, name, value)
    return mutate


def collision_of(base: Any, branches: list[BranchValue], rules: Any = None,
                 group: str = "g") -> ContextCollisionError:
    with pytest.raises(ContextCollisionError) as info:
        merge_contexts(base, branches, RULES if rules is None else rules, group=group)
    return info.value


def base_ctx() -> Ctx:
    return Ctx(num=1, items=[1, 2], mapping={"k": [1], "n": {"deep": 1}},
               frame=pd.DataFrame({"v": [1.0, 2.0]}),
               feature_store=pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}),
               audit_trail=["start"])


# ---------------------------------------------------------------- concat_columns


@st.composite
def column_additions(draw: st.DrawFn) -> tuple[pd.DataFrame, list[dict[str, list[Any]]],
                                                list[int]]:
    """A base frame, per-branch column assignments (new or distinct existing columns),
    and a completion order."""
    rows = draw(st.integers(1, 4))
    existing = draw(st.integers(0, 3))
    values = st.one_of(
        st.lists(st.floats(allow_nan=True, allow_infinity=False, width=64),
                 min_size=rows, max_size=rows),
        st.lists(st.integers(-5, 5), min_size=rows, max_size=rows),
    )
    if existing:
        base = pd.DataFrame({f"e{j}": draw(values) for j in range(existing)})
    else:
        base = pd.DataFrame()
    k = draw(st.integers(1, 6))
    owner_of_existing = {
        f"e{j}": draw(st.integers(-1, k - 1)) for j in range(existing)  # -1: nobody
    }
    assignments: list[dict[str, list[Any]]] = []
    for i in range(k):
        cols: dict[str, list[Any]] = {}
        for col, owner in owner_of_existing.items():
            if owner == i:
                cols[col] = draw(values)
        for j in range(draw(st.integers(0, 3))):
            cols[f"n{i}_{j}"] = draw(values)
        assignments.append(cols)
    order = draw(st.permutations(range(k)))
    return base, assignments, list(order)


@settings(max_examples=200, deadline=None)
@given(case=column_additions())
def test_concat_columns_equals_sequential_additions(
    case: tuple[pd.DataFrame, list[dict[str, list[Any]]], list[int]],
) -> None:
    frame, assignments, order = case
    base = Context(feature_store=frame)

    def assign(cols: dict[str, list[Any]]) -> Callable[[Any], None]:
        def mutate(ctx: Any) -> None:
            for col, vals in cols.items():
                ctx.feature_store[col] = vals
        return mutate

    branches = [branch(base, i, assign(cols)) for i, cols in enumerate(assignments)]
    merged = merge_contexts(base, [branches[i] for i in order], field_rules(Context))

    expected = frame.copy()
    for cols in assignments:  # declaration order
        for col, vals in cols.items():
            expected[col] = vals
    assert_frame_equal(merged.feature_store, expected)
    assert base.feature_store.columns.tolist() == frame.columns.tolist()


def test_concat_columns_in_declaration_order_not_completion_order() -> None:
    base = Context(feature_store=pd.DataFrame({"a": [1, 2]}))
    b0 = branch(base, 0, lambda c: c.feature_store.__setitem__("x", [10, 20]))
    b1 = branch(base, 1, lambda c: c.feature_store.__setitem__("y", [30, 40]))
    merged = merge_contexts(base, [b1, b0], field_rules(Context))
    assert_frame_equal(merged.feature_store,
                       pd.DataFrame({"a": [1, 2], "x": [10, 20], "y": [30, 40]}))


def test_concat_columns_same_column_changed_differently_collides() -> None:
    base = base_ctx()
    err = collision_of(base, [
        branch(base, 1, lambda c: c.feature_store.__setitem__("x", [1.0, 1.0])),
        branch(base, 0, lambda c: c.feature_store.__setitem__("x", [2.0, 2.0])),
        branch(base, 2, lambda c: c.feature_store.__setitem__("y", [2.0, 2.0])),
    ], group="p[1]")
    assert err.collisions == (
        Collision("feature_store", ("g[0]", "g[1]"), "column 'x' by g[0], g[1]"),
    )
    assert err.group == "p[1]"
    assert str(err) == (
        "context collision at p[1]:\n"
        "  field 'feature_store' changed by branches g[0], g[1] (column 'x' by g[0], g[1])\n"
        + RESOLVE
    )


def test_concat_columns_existing_column_changed_differently_collides() -> None:
    base = base_ctx()
    err = collision_of(base, [
        branch(base, 0, lambda c: c.feature_store.__setitem__("a", [5.0, 5.0])),
        branch(base, 1, lambda c: c.feature_store.__setitem__("b", [6.0, 6.0])),
        branch(base, 2, lambda c: c.feature_store.__setitem__("a", [7.0, 7.0])),
    ])
    assert err.collisions == (
        Collision("feature_store", ("g[0]", "g[2]"), "column 'a' by g[0], g[2]"),
    )


def test_concat_columns_several_clashing_columns() -> None:
    base = base_ctx()

    def both(val: float) -> Callable[[Any], None]:
        def mutate(c: Any) -> None:
            c.feature_store["x"] = [val, val]
            c.feature_store.loc[0, "a"] = val
        return mutate

    err = collision_of(base, [branch(base, 0, both(10.0)), branch(base, 1, both(20.0))])
    assert err.collisions == (Collision(
        "feature_store", ("g[0]", "g[1]"), "column 'a' by g[0], g[1]; column 'x' by g[0], g[1]"
    ),)


def test_concat_columns_same_change_in_two_branches_is_fine() -> None:
    base = base_ctx()
    merged = merge_contexts(base, [
        branch(base, 0, lambda c: c.feature_store.__setitem__("x", [1.0, 1.0])),
        branch(base, 1, lambda c: c.feature_store.__setitem__("x", [1.0, 1.0])),
        branch(base, 2, lambda c: c.feature_store.__setitem__("a", [9.0, 9.0])),
        branch(base, 3, lambda c: c.feature_store.__setitem__("a", [9.0, 9.0])),
    ], RULES)
    assert_frame_equal(merged.feature_store,
                       pd.DataFrame({"a": [9.0, 9.0], "b": [3.0, 4.0], "x": [1.0, 1.0]}))


def test_concat_columns_changed_values_of_an_existing_column() -> None:
    base = base_ctx()
    merged = merge_contexts(base, [
        branch(base, 0, lambda c: c.feature_store.__setitem__("b", c.feature_store["b"] * 10)),
        branch(base, 1),
    ], RULES)
    assert_frame_equal(merged.feature_store, pd.DataFrame({"a": [1.0, 2.0], "b": [30.0, 40.0]}))
    assert_frame_equal(base.feature_store, pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}))


def test_concat_columns_dropped_column() -> None:
    base = base_ctx()

    def drop_a(c: Any) -> None:
        c.feature_store = c.feature_store.drop(columns=["a"])

    def del_b(c: Any) -> None:
        del c.feature_store["b"]

    merged = merge_contexts(base, [
        branch(base, 0, drop_a),
        branch(base, 1, lambda c: c.feature_store.__setitem__("x", [0.0, 0.0])),
    ], RULES)
    assert_frame_equal(merged.feature_store, pd.DataFrame({"b": [3.0, 4.0], "x": [0.0, 0.0]}))

    merged = merge_contexts(base, [branch(base, 0, drop_a), branch(base, 1, drop_a)], RULES)
    assert_frame_equal(merged.feature_store, pd.DataFrame({"b": [3.0, 4.0]}))

    merged = merge_contexts(base, [branch(base, 0, drop_a), branch(base, 1, del_b)], RULES)
    assert merged.feature_store.shape == (2, 0)
    assert merged.feature_store.index.tolist() == [0, 1]


def test_concat_columns_dropped_by_one_changed_by_another_collides() -> None:
    base = base_ctx()
    err = collision_of(base, [
        branch(base, 0, lambda c: c.feature_store.__setitem__("a", [5.0, 5.0])),
        branch(base, 1, lambda c: c.feature_store.__delitem__("a")),
    ])
    assert err.collisions == (
        Collision("feature_store", ("g[0]", "g[1]"), "column 'a' by g[0], g[1]"),
    )


def test_concat_columns_branch_replacing_the_frame() -> None:
    base = base_ctx()
    err = collision_of(base, [branch(base, 0, setting(feature_store=None))])
    assert err.collisions == (
        Collision("feature_store", ("g[0]",),
                  "rule 'concat_columns': the branch replaced the frame"),
    )


def test_concat_columns_keeps_attrs_and_unchanged_frame() -> None:
    base = base_ctx()
    base.feature_store.attrs["source"] = "test"
    merged = merge_contexts(base, [branch(base, 0), branch(base, 1)], RULES)
    assert_frame_equal(merged.feature_store, base.feature_store)
    merged = merge_contexts(base, [
        branch(base, 0, lambda c: c.feature_store.__setitem__("x", [0.0, 0.0]))], RULES)
    assert merged.feature_store.attrs == {"source": "test"}


def test_concat_columns_keeps_a_changed_string_column() -> None:
    base = Context(feature_store=pd.DataFrame({"s": ["x", "y"], "n": [1.0, 2.0]}))
    b0 = branch(base, 0, lambda c: c.feature_store.__setitem__("s", ["p", "q"]))
    merged = merge_contexts(base, [b0, branch(base, 1)], field_rules(Context))
    assert merged.feature_store["s"].tolist() == ["p", "q"]


# ---------------------------------------------------------------- rule 'error'

CANDIDATES: dict[str, Callable[[int], Any]] = {
    # choice 0 builds a fresh object equal to the base value; 1 and 2 differ from it
    "num": lambda c: [1, 2, 3][c],
    "items": lambda c: [[1, 2], [1, 2, 3], [9]][c],
    "mapping": lambda c: [{"k": [1], "n": {"deep": 1}}, {"k": [2]},
                          {"k": [1], "n": {"deep": 2}}][c],
    "frame": lambda c: [pd.DataFrame({"v": [1.0, 2.0]}), pd.DataFrame({"v": [1.0, 3.0]}),
                        pd.DataFrame({"v": [1.0, 2.0], "w": [0.0, 0.0]})][c],
}

choices = st.sampled_from([None, 0, 1, 2])  # None: the branch leaves the field alone


@settings(max_examples=300, deadline=None)
@given(
    plan=st.lists(st.fixed_dictionaries(dict.fromkeys(ERROR_FIELDS, choices)),
                  min_size=1, max_size=4),
    data=st.data(),
)
def test_collision_exactly_when_two_branches_differ(
    plan: list[dict[str, int | None]], data: st.DataObject
) -> None:
    base = base_ctx()
    branches = [
        branch(base, i, setting(**{f: CANDIDATES[f](c) for f, c in row.items() if c is not None}))
        for i, row in enumerate(plan)
    ]
    order = data.draw(st.permutations(range(len(plan))))
    completed = [branches[i] for i in order]

    expected: list[Collision] = []
    winners: dict[str, int | None] = {}
    for f in ERROR_FIELDS:
        changed = [(f"g[{i}]", plan[i][f]) for i in order if plan[i][f] in (1, 2)]
        if len({c for _, c in changed}) > 1:  # named in declaration order
            expected.append(Collision(f, tuple(f"g[{i}]" for i in sorted(order)
                                               if plan[i][f] in (1, 2))))
        winners[f] = changed[0][1] if changed else None

    if expected:
        err = collision_of(base, completed)
        assert err.collisions == tuple(expected)
        return
    merged = merge_contexts(base, completed, RULES, group="g")
    for f in ERROR_FIELDS:
        choice = winners[f]
        want = getattr(base, f) if choice is None else CANDIDATES[f](choice)
        assert values_equal(getattr(merged, f), want), f
    assert merged.run_id == base.run_id
    assert merged.audit_trail == ["start"]
    assert_frame_equal(merged.feature_store, base.feature_store)


def test_collision_on_a_scalar_names_the_branches() -> None:
    base = base_ctx()
    err = collision_of(base, [
        branch(base, 2, setting(num=7), label="p[1][2] (c)"),
        branch(base, 0, setting(num=5), label="p[1][0] (a)"),
        branch(base, 1, label="p[1][1] (b)"),
    ], group="p[1]")
    # named in declaration order, not in the order they completed
    assert err.collisions == (Collision("num", ("p[1][0] (a)", "p[1][2] (c)")),)
    assert str(err) == (
        "context collision at p[1]:\n"
        "  field 'num' changed by branches p[1][0] (a), p[1][2] (c)\n" + RESOLVE
    )


@pytest.mark.parametrize(
    ("field", "first", "second"),
    [
        ("num", 5, 6),
        ("items", [1, 2, 3], [1, 2, 4]),
        ("mapping", {"k": [1, 2]}, {"k": [1, 3]}),
        ("frame", pd.DataFrame({"v": [1.0, 5.0]}), pd.DataFrame({"v": [1.0, 6.0]})),
        ("frame", pd.DataFrame({"v": [1, 5]}), pd.DataFrame({"v": [1.0, 5.0]})),
    ],
)
def test_each_kind_of_field_collides(field: str, first: Any, second: Any) -> None:
    base = base_ctx()
    err = collision_of(base, [branch(base, 0, setting(**{field: first})),
                              branch(base, 1, setting(**{field: second}))])
    assert err.collisions == (Collision(field, ("g[0]", "g[1]")),)  # rule 'error': no detail


def test_in_place_changes_collide() -> None:
    base = base_ctx()
    err = collision_of(base, [
        branch(base, 0, lambda c: c.items.append(3)),
        branch(base, 1, lambda c: c.items.append(4)),
        branch(base, 2, lambda c: c.mapping["n"].__setitem__("deep", 2)),
        branch(base, 3, lambda c: c.mapping["n"].__setitem__("deep", 3)),
        branch(base, 4, lambda c: c.frame.__setitem__("v", [0.0, 0.0])),
        branch(base, 5, lambda c: c.frame.__setitem__("w", [0.0, 0.0])),
    ])
    assert err.collisions == (
        Collision("items", ("g[0]", "g[1]")),
        Collision("mapping", ("g[2]", "g[3]")),
        Collision("frame", ("g[4]", "g[5]")),
    )


def test_identical_changes_and_single_changes_do_not_collide() -> None:
    base = base_ctx()
    merged = merge_contexts(base, [
        branch(base, 0, setting(num=5, items=[7], frame=pd.DataFrame({"v": [0.0, 0.0]}))),
        branch(base, 1, setting(num=5, items=[7], frame=pd.DataFrame({"v": [0.0, 0.0]}))),
        branch(base, 2, setting(mapping={"only": "me"})),
        branch(base, 3),
    ], RULES)
    assert merged.num == 5
    assert merged.items == [7]
    assert merged.mapping == {"only": "me"}
    assert_frame_equal(merged.frame, pd.DataFrame({"v": [0.0, 0.0]}))
    assert merged.run_id == ""


def test_untouched_fields_never_collide_even_when_not_identical() -> None:
    base = base_ctx()
    b0 = branch(base, 0, setting(items=[1, 2], mapping={"k": [1], "n": {"deep": 1}},
                                 frame=pd.DataFrame({"v": [1.0, 2.0]})))
    b1 = branch(base, 1)
    assert b0.context.items is not base.items
    assert b1.context.frame is not base.frame
    merged = merge_contexts(base, [b0, b1], RULES)
    assert values_equal(merged, base)


def test_nan_is_not_a_change() -> None:
    base = Ctx(frame=pd.DataFrame({"v": [np.nan, 1.0]}), mapping={"x": math.nan})
    merged = merge_contexts(base, [
        branch(base, 0, setting(frame=pd.DataFrame({"v": [np.nan, 1.0]}))),
        branch(base, 1, setting(mapping={"x": float("nan")})),
        branch(base, 2, setting(frame=pd.DataFrame({"v": [np.nan, 1.0]}))),
    ], RULES)
    assert_frame_equal(merged.frame, pd.DataFrame({"v": [np.nan, 1.0]}))


def test_string_column_changed_differently_collides() -> None:
    base = Ctx(frame=pd.DataFrame({"s": ["x", "y"]}),
               feature_store=pd.DataFrame({"s": ["x", "y"], "n": [1.0, 2.0]}))

    def strings(first: list[str]) -> Callable[[Any], None]:
        def mutate(c: Any) -> None:
            c.frame["s"] = first
            c.feature_store["s"] = first
        return mutate

    err = collision_of(base, [branch(base, 1, strings(["u", "v"])),
                              branch(base, 0, strings(["p", "q"]))])
    # rule 'error' names the field; rule 'concat_columns' also the column that collided
    assert err.collisions == (
        Collision("feature_store", ("g[0]", "g[1]"), "column 's' by g[0], g[1]"),
        Collision("frame", ("g[0]", "g[1]")),
    )


def test_branch_of_another_type_is_refused() -> None:
    base = base_ctx()
    odd = BranchValue("g[1]", 1, SelectionContext())
    with pytest.raises(ExecutionError) as info:
        merge_contexts(base, [branch(base, 0), odd], RULES, group="p[1]")
    assert not isinstance(info.value, ContextCollisionError)
    assert str(info.value) == (
        "branch g[1] returned a SelectionContext, but the group at p[1] forked a Ctx; "
        "declare a merge_adapter to combine them"
    )


def test_no_branches_gives_the_base_back() -> None:
    base = base_ctx()
    merged = merge_contexts(base, [], RULES)
    assert merged is not base
    assert values_equal(merged, base)


def test_merge_does_not_change_base_or_branches() -> None:
    base = base_ctx()
    before = fork_context(base)
    b0 = branch(base, 0, lambda c: c.audit_trail.append("b0"))
    b1 = branch(base, 1, lambda c: c.feature_store.__setitem__("x", [0.0, 0.0]))
    kept = [fork_context(b0.context), fork_context(b1.context)]
    merged = merge_contexts(base, [b0, b1], RULES)
    merged.audit_trail.append("after")
    merged.feature_store.loc[0, "a"] = -1.0
    assert values_equal(base, before)
    assert values_equal(b0.context, kept[0])
    assert values_equal(b1.context, kept[1])


# ---------------------------------------------------------------- append


@settings(max_examples=200, deadline=None)
@given(
    start=st.lists(st.text(max_size=3), max_size=3),
    additions=st.lists(st.lists(st.text(max_size=3), max_size=3), min_size=1, max_size=6),
    data=st.data(),
)
def test_append_keeps_completion_order(
    start: list[str], additions: list[list[str]], data: st.DataObject
) -> None:
    base = Context(audit_trail=list(start))
    branches = [branch(base, i, lambda c, a=added: c.audit_trail.extend(a))
                for i, added in enumerate(additions)]
    order = data.draw(st.permutations(range(len(additions))))
    merged = merge_contexts(base, [branches[i] for i in order], field_rules(Context))
    assert merged.audit_trail == start + [x for i in order for x in additions[i]]
    assert base.audit_trail == start


def test_append_example_with_permuted_completion() -> None:
    base = Context(audit_trail=["start"])
    b = [branch(base, i, lambda c, i=i: c.log(f"from {i}")) for i in range(3)]
    merged = merge_contexts(base, [b[2], b[0], b[1]], field_rules(Context))
    assert merged.audit_trail == ["start", "from 2", "from 0", "from 1"]


@pytest.mark.parametrize(
    "rewrite",
    [
        lambda trail: trail.__setitem__(0, "rewritten"),
        lambda trail: trail.clear(),
        lambda trail: trail.insert(0, "first"),
        lambda trail: trail.pop(),
    ],
    ids=["replace", "clear", "insert", "pop"],
)
def test_append_refuses_rewritten_items(rewrite: Callable[[list[str]], Any]) -> None:
    base = Context(audit_trail=["start", "second"])
    err = collision_of(base, [
        branch(base, 0, lambda c: c.log("fine")),
        branch(base, 1, lambda c: rewrite(c.audit_trail), label="bad"),
    ], rules=field_rules(Context))
    assert err.collisions == (
        Collision("audit_trail", ("bad",), "rule 'append': the branch rewrote existing items"),
    )


def test_append_on_a_field_that_is_not_a_list() -> None:
    base = base_ctx()
    err = collision_of(base, [branch(base, 0, setting(num=2)), branch(base, 1)],
                       rules={**RULES, "num": "append"})
    assert err.collisions == (Collision("num", ("g[0]", "g[1]"), "rule 'append' needs a list"),)


# ---------------------------------------------------------------- last_wins / first_wins


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.integers(2, 6)), min_size=1, max_size=6),
    data=st.data(),
)
def test_last_and_first_wins_pick_by_completion_order(
    values: list[int | None], data: st.DataObject
) -> None:
    base = base_ctx()  # num == 1; None: the branch leaves num alone
    branches = [branch(base, i, None if v is None else setting(num=v))
                for i, v in enumerate(values)]
    order = data.draw(st.permutations(range(len(values))))
    completed = [branches[i] for i in order]
    changed = [values[i] for i in order if values[i] is not None]
    last = merge_contexts(base, completed, {**RULES, "num": "last_wins"})
    first = merge_contexts(base, completed, {**RULES, "num": "first_wins"})
    assert last.num == (changed[-1] if changed else 1)
    assert first.num == (changed[0] if changed else 1)


def test_last_wins_ignores_branches_that_did_not_change_the_field() -> None:
    base = base_ctx()
    completed = [branch(base, 1, setting(items=[5])), branch(base, 0, setting(items=[6])),
                 branch(base, 2)]
    assert merge_contexts(base, completed, {**RULES, "items": "last_wins"}).items == [6]
    assert merge_contexts(base, completed, {**RULES, "items": "first_wins"}).items == [5]


def test_custom_rule_gets_prefork_value_and_declaration_order() -> None:
    calls: list[tuple[Any, list[Any]]] = []

    def total(pre: Any, values: list[Any]) -> Any:
        calls.append((pre, list(values)))
        return pre + sum(values)

    base = base_ctx()
    completed = [branch(base, 2, setting(num=30)), branch(base, 0, setting(num=10)),
                 branch(base, 1)]
    merged = merge_contexts(base, completed, {**RULES, "num": total})
    assert calls == [(1, [10, 1, 30])]
    assert merged.num == 42


def test_custom_rule_resolves_what_error_would_refuse() -> None:
    def union(pre: list[int], values: list[list[int]]) -> list[int]:
        return sorted({x for v in values for x in v})

    base = base_ctx()
    completed = [branch(base, 1, setting(items=[4])), branch(base, 0, setting(items=[3]))]
    err = collision_of(base, completed)
    assert err.collisions == (Collision("items", ("g[0]", "g[1]")),)
    merged = merge_contexts(base, completed, {**RULES, "items": union})
    assert merged.items == [3, 4]


# ---------------------------------------------------------------- fork isolation


def sel() -> SelectionContext:
    return SelectionContext(
        universe=["AAA", "BBB"],
        params={"window": {"days": [5, 10]}, "arr": np.array([1.0, 2.0])},
        feature_store=pd.DataFrame({"a": [1, 2, 3], "b": [4.0, 5.0, 6.0]}),
        audit_trail=["start"],
    )


MUTATIONS: dict[str, Callable[[SelectionContext], Any]] = {
    "new column": lambda c: c.feature_store.__setitem__("x", [0, 0, 0]),
    "replace column": lambda c: c.feature_store.__setitem__("a", [9, 9, 9]),
    "loc": lambda c: c.feature_store.loc.__setitem__((0, "a"), 99),
    "iloc": lambda c: c.feature_store.iloc.__setitem__((1, 1), -1.0),
    "iloc row": lambda c: c.feature_store.iloc.__setitem__(slice(0, 2), 0),
    "list append": lambda c: c.universe.append("CCC"),
    "audit": lambda c: c.log("more"),
    "nested dict": lambda c: c.params["window"].__setitem__("days", [1]),
    "nested list": lambda c: c.params["window"]["days"].append(20),
    "array": lambda c: c.params["arr"].__setitem__(0, 100.0),
    "attrs": lambda c: c.feature_store.attrs.__setitem__("k", "v"),
}


def snapshot_of(ctx: SelectionContext) -> dict[str, Any]:
    return {
        "universe": list(ctx.universe),
        "audit": list(ctx.audit_trail),
        "days": list(ctx.params["window"]["days"]),
        "window": dict(ctx.params["window"]),
        "arr": ctx.params["arr"].tolist(),
        "frame": ctx.feature_store.to_dict("list"),
        "attrs": dict(ctx.feature_store.attrs),
    }


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_mutating_the_fork_leaves_the_original(name: str) -> None:
    original = sel()
    before = snapshot_of(original)
    fork = fork_context(original)
    MUTATIONS[name](fork)
    assert snapshot_of(original) == before
    assert snapshot_of(fork) != before


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_mutating_the_original_leaves_the_fork(name: str) -> None:
    original = sel()
    fork = fork_context(original)
    before = snapshot_of(fork)
    MUTATIONS[name](original)
    assert snapshot_of(fork) == before


def test_forks_of_one_context_are_independent() -> None:
    original = sel()
    one, two = fork_context(original), fork_context(original)
    one.feature_store.loc[0, "a"] = 50
    two.feature_store.loc[0, "a"] = 60
    one.params["window"]["days"].append(1)
    assert original.feature_store.loc[0, "a"] == 1
    assert one.feature_store.loc[0, "a"] == 50
    assert two.feature_store.loc[0, "a"] == 60
    assert two.params["window"]["days"] == [5, 10]


def test_fork_is_equal_but_not_shared() -> None:
    original = sel()
    fork = fork_context(original)
    assert type(fork) is SelectionContext
    assert values_equal(fork, original)
    assert fork.universe is not original.universe
    assert fork.params["window"] is not original.params["window"]
    assert fork.feature_store is not original.feature_store


# ---------------------------------------------------------------- values_equal


def test_values_equal_frames_with_nan() -> None:
    a = pd.DataFrame({"x": [1.0, np.nan], "y": [np.nan, np.nan]})
    b = pd.DataFrame({"x": [1.0, np.nan], "y": [np.nan, np.nan]})
    assert values_equal(a, b)
    assert not values_equal(a, pd.DataFrame({"x": [1.0, 2.0], "y": [np.nan, np.nan]}))


def test_values_equal_frames_of_different_dtypes() -> None:
    assert not values_equal(pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"x": [1.0, 2.0]}))
    assert not values_equal(pd.DataFrame({"x": [1, 2]}),
                            pd.DataFrame({"x": [1, 2]}, dtype="int32"))
    assert not values_equal(pd.DataFrame({"x": [1, 2]}),
                            pd.DataFrame({"x": [1, 2]}, dtype="Int64"))


def test_values_equal_frames_sharing_buffers() -> None:
    a = pd.DataFrame({"x": [1.0, 2.0], "y": [3, 4]})
    shallow = a.copy(deep=False)
    assert values_equal(a, shallow)
    assert values_equal(a, a.copy())
    shallow.loc[0, "x"] = 10.0  # copy-on-write: now it differs
    assert not values_equal(a, shallow)
    assert a.loc[0, "x"] == 1.0


def test_values_equal_frame_labels() -> None:
    a = pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]})
    assert not values_equal(a, a[["y", "x"]])
    assert not values_equal(a, a.set_axis([5, 6]))
    assert not values_equal(a, a.rename(columns={"x": "z"}))
    assert not values_equal(a, a.iloc[:1])


def test_values_equal_series_arrays_and_scalars() -> None:
    s = pd.Series([1.0, np.nan], name="a")
    assert values_equal(s, pd.Series([1.0, np.nan], name="a"))
    assert not values_equal(s, pd.Series([1.0, np.nan], name="b"))
    assert values_equal(np.array([1.0, np.nan]), np.array([1.0, np.nan]))
    assert not values_equal(np.array([1, 2]), np.array([1.0, 2.0]))
    assert values_equal(float("nan"), float("nan"))
    assert not values_equal(1, 1.0)
    assert not values_equal(1, True)
    assert values_equal({"a": [1, {"b": pd.DataFrame({"c": [1]})}]},
                        {"a": [1, {"b": pd.DataFrame({"c": [1]})}]})
    assert not values_equal({"a": [1]}, {"a": [1], "b": 2})
    assert not values_equal([1, 2], (1, 2))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (pd.Series(["x", "y", "z"]), pd.Series(["p", "q", "r"])),
        (pd.Series([1, None], dtype="Int64"), pd.Series([2, None], dtype="Int64")),
        (pd.Series(pd.Categorical(["a", "b"])),
         pd.Series(pd.Categorical(["b", "a"], categories=["a", "b"]))),
        (pd.Series(pd.to_datetime(["2020-01-01"]).tz_localize("UTC")),
         pd.Series(pd.to_datetime(["2021-01-01"]).tz_localize("UTC"))),
    ],
    ids=["str", "Int64-with-NA", "category", "datetime-tz"],
)
def test_values_equal_tells_different_columns_apart(left: pd.Series, right: pd.Series) -> None:
    for _ in range(10):  # the bug depends on allocator reuse; any one hit is a failure
        assert not values_equal(left, right)
        assert not values_equal(pd.DataFrame({"c": left}), pd.DataFrame({"c": right}))


# ---------------------------------------------------------------- Snapshot


def test_snapshot_restores_list_append() -> None:
    ctx = Context(audit_trail=["a"])
    before = fork_context(ctx)
    snap = Snapshot(ctx)
    ctx.log("b")
    ctx.audit_trail[0] = "changed"
    restored = snap.restore()
    assert type(restored) is Context
    assert restored.audit_trail == ["a"]
    assert values_equal(restored, before)


def test_snapshot_restores_new_column_on_empty_frame() -> None:
    ctx = Context()
    assert ctx.feature_store.shape == (0, 0)
    before = fork_context(ctx)
    snap = Snapshot(ctx)
    ctx.feature_store["x"] = [1.0, 2.0]
    ctx.inference_outputs["y"] = ["a"]
    restored = snap.restore()
    assert restored.feature_store.shape == (0, 0)
    assert restored.inference_outputs.shape == (0, 0)
    assert values_equal(restored, before)
    assert ctx.feature_store.shape == (2, 1)


def test_snapshot_restores_new_column_on_non_empty_frame() -> None:
    ctx = SelectionContext(feature_store=pd.DataFrame({"a": [1.0, 2.0]}),
                           params={"k": {"n": [1]}}, universe=["A"])
    ctx.feature_store.attrs["tag"] = ["v"]
    before = fork_context(ctx)
    snap = Snapshot(ctx)
    ctx.feature_store["b"] = [3.0, 4.0]
    ctx.feature_store.loc[0, "a"] = -1.0
    ctx.feature_store.attrs["tag"].append("w")
    ctx.params["k"]["n"].append(2)
    ctx.universe.append("B")
    ctx.run_id = "changed"
    restored = snap.restore()
    assert type(restored) is SelectionContext
    assert values_equal(restored, before)
    assert_frame_equal(restored.feature_store, pd.DataFrame({"a": [1.0, 2.0]}))
    assert restored.feature_store.attrs == {"tag": ["v"]}
    assert restored.params == {"k": {"n": [1]}}
    assert restored.universe == ["A"]
    assert restored.run_id == ""


def test_snapshot_of_an_empty_frame_keeps_its_labels() -> None:
    frame = pd.DataFrame(index=pd.DatetimeIndex([], name="t"),
                         columns=pd.Index([], dtype=object, name="c"))
    ctx = Context(feature_store=frame)
    snap = Snapshot(ctx)
    ctx.feature_store["x"] = 1.0
    restored = snap.restore().feature_store
    assert restored.shape == (0, 0)
    assert restored.index.equals(frame.index)
    assert restored.index.name == "t"
    assert restored.columns.name == "c"
    assert isinstance(restored.index, pd.DatetimeIndex)


def test_snapshot_of_an_empty_frame_keeps_nested_attrs() -> None:
    ctx = Context()
    ctx.feature_store.attrs["tag"] = ["v"]
    snap = Snapshot(ctx)
    ctx.feature_store.attrs["tag"].append("w")
    assert snap.restore().feature_store.attrs == {"tag": ["v"]}


def test_snapshot_of_a_plain_value() -> None:
    value = {"a": [1, 2], "f": pd.DataFrame({"x": [1]})}
    snap = Snapshot(value)
    value["a"].append(3)
    value["f"].loc[0, "x"] = 5
    restored = snap.restore()
    assert restored["a"] == [1, 2]
    assert restored["f"].loc[0, "x"] == 1


def test_fork_permutations_do_not_matter_for_concat_and_error() -> None:
    """Every completion order of three compatible branches merges to one result."""
    base = base_ctx()
    made = [
        branch(base, 0, lambda c: c.feature_store.__setitem__("x", [1.0, 1.0])),
        branch(base, 1, setting(num=4)),
        branch(base, 2, lambda c: c.feature_store.__setitem__("y", [2.0, 2.0])),
    ]
    results = [merge_contexts(base, list(p), RULES) for p in itertools.permutations(made)]
    for r in results[1:]:
        assert values_equal(r, results[0])
    assert results[0].num == 4
    assert results[0].feature_store.columns.tolist() == ["a", "b", "x", "y"]
