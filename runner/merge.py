"""Merging the contexts of parallel branches back into one.

Each field is merged by its rule (declared on the context type, overridable
per pipeline). A branch *changed* a field when its value differs in content
from the pre-fork value; a field no branch changed never collides.

- ``append``: the items each branch appended, in branch completion order.
- ``concat_columns``: ``pd.concat(axis=1)`` of the columns each branch added
  or changed; one column changed differently by two branches collides.
- ``error``: one branch may change the field, or several to the same value.
- ``last_wins`` / ``first_wins``: among the branches that changed it, in
  completion order.
- ``"module:callable"``: ``fn(pre_fork_value, branch_values)`` with the branch
  values in declaration order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pandas as pd
from pydantic import BaseModel

from runner.context import columns_equal, values_equal
from runner.errors import Collision, ContextCollisionError, ExecutionError

__all__ = ["BranchValue", "merge_contexts"]

C = TypeVar("C", bound=BaseModel)
RuleFn = Callable[[Any, list[Any]], Any]


@dataclass(frozen=True)
class BranchValue:
    """One branch's result: its label, declaration index and context."""

    label: str
    index: int
    context: Any


class _Conflict(Exception):
    def __init__(self, branches: Sequence[str], detail: str = "") -> None:
        self.branches = tuple(branches)
        self.detail = detail


def merge_contexts(
    base: C,
    branches: Sequence[BranchValue],
    rules: Mapping[str, str | RuleFn],
    *,
    group: str = "",
) -> C:
    """Merge branch contexts (given in completion order) into a new context.

    Raises :class:`ContextCollisionError` listing every colliding field.
    """
    for b in branches:
        if type(b.context) is not type(base):
            raise ExecutionError(
                f"branch {b.label} returned a {type(b.context).__name__}, but the group at "
                f"{group} forked a {type(base).__name__}; declare a merge_adapter to combine them"
            )
    merged: dict[str, Any] = {}
    collisions: list[Collision] = []
    for name, value in base.__dict__.items():
        rule = rules.get(name, "error")
        values = [(b.label, b.index, b.context.__dict__[name]) for b in branches]
        try:
            merged[name] = _merge_field(rule, value, values)
        except _Conflict as conflict:
            collisions.append(Collision(name, conflict.branches, conflict.detail))
    if collisions:
        raise ContextCollisionError(collisions, group=group)
    out = base.model_copy()
    out.__dict__.update(merged)
    return out


def _merge_field(rule: str | RuleFn, base: Any, values: list[tuple[str, int, Any]]) -> Any:
    if callable(rule):
        ordered = sorted(values, key=lambda v: v[1])
        return rule(base, [v for _, _, v in ordered])
    if rule == "concat_columns":
        return _concat_columns(base, values)
    if rule == "append":
        return _append(base, values)
    changed = [(label, v) for label, _, v in values if not values_equal(v, base)]
    if not changed:
        return base
    if rule == "last_wins":
        return changed[-1][1]
    if rule == "first_wins":
        return changed[0][1]
    first = changed[0][1]
    if all(values_equal(first, v) for _, v in changed[1:]):
        return first
    # named in declaration order, whatever order the branches completed in
    raise _Conflict([label for label, _, v in sorted(values, key=lambda t: t[1])
                     if not values_equal(v, base)])


def _append(base: Any, values: list[tuple[str, int, Any]]) -> Any:
    if not isinstance(base, list):
        raise _Conflict([label for label, _, _ in values], "rule 'append' needs a list")
    out = list(base)
    n = len(base)
    for label, _, v in values:
        if not isinstance(v, list) or len(v) < n or not values_equal(v[:n], base):
            raise _Conflict([label], "rule 'append': the branch rewrote existing items")
        out.extend(v[n:])
    return out


def _concat_columns(base: Any, values: list[tuple[str, int, Any]]) -> Any:
    if not isinstance(base, pd.DataFrame):
        labels = [label for label, _, _ in values]
        raise _Conflict(labels, "rule 'concat_columns' needs a DataFrame")
    owners: dict[Any, list[tuple[str, Any]]] = {}  # column -> [(branch, series or None)]
    for label, _, frame in sorted(values, key=lambda v: v[1]):
        if frame is base:
            continue
        if not isinstance(frame, pd.DataFrame):
            raise _Conflict([label], "rule 'concat_columns': the branch replaced the frame")
        for col in frame.columns:
            if col not in base.columns or not columns_equal(frame[col], base[col]):
                owners.setdefault(col, []).append((label, frame[col]))
        for col in base.columns.difference(frame.columns, sort=False):
            owners.setdefault(col, []).append((label, None))
    if not owners:
        return base
    pieces: dict[Any, pd.Series | None] = {}
    clashes: list[str] = []
    for col, changes in owners.items():
        first = changes[0][1]
        same = all(
            (s is None and first is None)
            or (s is not None and first is not None and columns_equal(s, first))
            for _, s in changes[1:]
        )
        if not same:
            clashes.append(f"column {col!r} by " + ", ".join(label for label, _ in changes))
            continue
        pieces[col] = first
    if clashes:
        labels = sorted({label for ch in owners.values() for label, _ in ch if len(ch) > 1})
        raise _Conflict(labels, "; ".join(clashes))
    columns: list[pd.Series] = []
    for col in base.columns:
        if col in pieces:
            piece = pieces.pop(col)
            if piece is not None:
                columns.append(piece.rename(col))
        else:
            columns.append(base[col])
    columns.extend(s.rename(c) for c, s in pieces.items() if s is not None)
    if not columns:
        return base.iloc[:, 0:0]
    out = pd.concat(columns, axis=1, sort=False)
    out.attrs = dict(base.attrs)
    return out
