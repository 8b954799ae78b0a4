"""The typed ``Context`` passed from stage to stage, and how it forks.

A field's merge rule is declared on the type with :class:`MergeRule` metadata:

    class MyContext(Context):
        signals: Annotated[list[str], MergeRule("append")] = []

Fields without one use ``error``: two branches that change the field
differently collide. A fork is semantically deep but cheap: DataFrames are
shallow copies that pandas' copy-on-write keeps independent, so forking a
context that holds a 1 GB frame copies (almost) nothing.
"""

from __future__ import annotations

import copy
import enum
import math
from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Context",
    "MergeRule",
    "MetaContext",
    "SelectionContext",
    "field_rules",
    "fork_context",
    "fork_value",
    "values_equal",
]

C = TypeVar("C", bound=BaseModel)


@dataclass(frozen=True)
class MergeRule:
    """``Annotated`` metadata naming how parallel branches merge a field."""

    rule: str


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame()


class Context(BaseModel):
    """Base context: run id, an append-only audit trail and two column stores."""

    # Validators are built on first use (defer_build): a context type a run never makes,
    # here or in a user's module, costs nothing at import.
    model_config = ConfigDict(
        arbitrary_types_allowed=True, extra="forbid", validate_assignment=False, defer_build=True
    )

    run_id: str = ""
    workspace: str | None = Field(
        default=None, description="Scratch folder for this run, removed when the run ends"
    )
    audit_trail: Annotated[list[str], MergeRule("append")] = Field(default_factory=list)
    feature_store: Annotated[pd.DataFrame, MergeRule("concat_columns")] = Field(
        default_factory=_empty_frame
    )
    inference_outputs: Annotated[pd.DataFrame, MergeRule("concat_columns")] = Field(
        default_factory=_empty_frame
    )

    def log(self, message: str) -> None:
        """Append a line of reasoning to the audit trail."""
        self.audit_trail.append(message)


class SelectionContext(Context):
    """Root context of the selection (alpha) pipelines."""

    universe: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)


class MetaContext(Context):
    """Root context of the meta pipeline that chains pillars."""

    params: dict[str, Any] = Field(default_factory=dict)
    pillars: Annotated[list[str], MergeRule("append")] = Field(default_factory=list)


def field_rules(context_type: type[BaseModel]) -> dict[str, str]:
    """Every field of a context type with its declared rule (default ``error``)."""
    rules = {}
    for name, info in context_type.model_fields.items():
        rule = next((m.rule for m in info.metadata if isinstance(m, MergeRule)), "error")
        rules[name] = rule
    return rules


# ---------------------------------------------------------------- fork

_ATOMS = (type(None), bool, int, float, complex, str, bytes, enum.Enum, pd.Timestamp)
_EXACT_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes})
"""Checked by ``type(v) in``: a set lookup, ten times cheaper than ``isinstance``."""


def fork_value(value: Any) -> Any:
    """A copy no one else can change: deep for containers, copy-on-write for pandas."""
    if isinstance(value, (*_ATOMS, pd.Index)):
        return value
    if isinstance(value, pd.DataFrame | pd.Series):
        return value.copy(deep=False)
    if isinstance(value, list):
        return [fork_value(v) for v in value]
    if isinstance(value, dict):
        return {k: fork_value(v) for k, v in value.items()}
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(fork_value(v) for v in value)
    if isinstance(value, BaseModel):
        return fork_context(value)
    if isinstance(value, np.ndarray):
        return value if not value.flags.writeable else value.copy()
    return copy.deepcopy(value)


def fork_context(context: C) -> C:
    """An isolated copy of ``context`` for one branch (or one forensic snapshot)."""
    new = copy.copy(context)
    data = new.__dict__
    for name, value in data.items():
        if type(value) not in _EXACT_ATOMS:
            data[name] = fork_value(value)
    return new


# ---------------------------------------------------------------- equality


def _same_buffer(a: pd.Series, b: pd.Series) -> bool:
    """True when two columns are backed by the very same memory (copy-on-write twins).

    Only NumPy-backed columns qualify: for extension arrays ``to_numpy`` makes a
    temporary copy, whose address says nothing. Both arrays are held while they
    are compared, so neither address can be reused by the other.
    """
    if a.array is b.array:
        return True
    if not (isinstance(a.dtype, np.dtype) and isinstance(b.dtype, np.dtype)):
        return False
    left, right = a.to_numpy(copy=False), b.to_numpy(copy=False)
    return bool(left.__array_interface__ == right.__array_interface__) and a.dtype == b.dtype


def columns_equal(a: pd.Series, b: pd.Series) -> bool:
    """Content equality of two columns, O(1) when they share their buffer."""
    if a.dtype != b.dtype or len(a) != len(b):
        return False
    if not _same_labels(a.index, b.index):
        return False
    return _same_buffer(a, b) or bool(a.equals(b))


def _same_labels(a: pd.Index, b: pd.Index) -> bool:
    """Same labels, names and dtype (``Index.equals`` ignores the last two)."""
    return a is b or bool(a.identical(b))


def frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Content equality of two frames: same labels, dtypes and values (NaN equals NaN)."""
    if a is b:
        return True
    if a.shape != b.shape or not _same_labels(a.columns, b.columns) \
            or not _same_labels(a.index, b.index):
        return False
    if _same_blocks(a, b):
        return True
    if not a.columns.is_unique:
        return bool(a.equals(b))
    return all(columns_equal(a[c], b[c]) for c in a.columns)


def _same_blocks(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """True when two frames hold the very same memory, block for block (copy-on-write
    twins, such as a frame and its snapshot): O(blocks), not O(columns) Series built.
    False only means "not shown equal this way": the caller compares the columns."""
    try:
        left, right = a._mgr.blocks, b._mgr.blocks
    except AttributeError:  # a pandas without block managers: compare column by column
        return False
    if len(left) != len(right):
        return False
    for x, y in zip(left, right, strict=True):
        xv, yv = x.values, y.values
        if xv is not yv and not (isinstance(xv, np.ndarray) and isinstance(yv, np.ndarray)
                                 and xv.dtype == yv.dtype
                                 and xv.__array_interface__ == yv.__array_interface__):
            return False
        if x.mgr_locs is not y.mgr_locs and not np.array_equal(x.mgr_locs.as_array,
                                                                y.mgr_locs.as_array):
            return False
    return True


def values_equal(a: Any, b: Any) -> bool:
    """Content equality that understands frames, arrays, containers and models."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, pd.DataFrame):
        return frames_equal(a, b)
    if isinstance(a, pd.Series):
        return columns_equal(a, b) and a.name == b.name
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and a.dtype == b.dtype and bool(
            np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    if isinstance(a, BaseModel):
        return all(values_equal(a.__dict__[k], b.__dict__.get(k)) for k in a.__dict__)
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------- snapshots


class _EmptyFrame:
    """An empty frame remembered by its labels: it has no data to copy."""

    __slots__ = ("attrs", "columns", "index")

    def __init__(self, index: pd.Index, columns: pd.Index, attrs: dict[Any, Any]) -> None:
        self.index, self.columns, self.attrs = index, columns, attrs

    def restore(self) -> pd.DataFrame:
        frame = pd.DataFrame(index=self.index, columns=self.columns)
        frame.attrs = copy.deepcopy(self.attrs)
        return frame


def _snapshot_value(value: Any) -> Any:
    """Like :func:`fork_value`, with fast paths for what every context holds."""
    kind = type(value)
    if kind is pd.DataFrame:
        columns = value.columns
        if not len(columns):
            index = value.index
            if not len(index):
                attrs = value.attrs
                return _EmptyFrame(index, columns, copy.deepcopy(attrs) if attrs else {})
        return value.copy(deep=False)
    if kind is list:
        copied = value.copy()
        try:
            "".join(copied)  # all strings (immutable): the shallow copy is the snapshot
        except TypeError:
            return fork_value(value)
        return copied
    return fork_value(value)


class Snapshot:
    """The state of a context when a stage received it, restorable after the stage
    has changed it in place. Taken before every stage, so it copies only what it
    must: containers, and frames that hold data (copy-on-write, so no buffers)."""

    __slots__ = ("_context", "_values")
    _context: type[BaseModel] | None
    _values: dict[str, Any]

    def __init__(self, context: Any) -> None:
        if isinstance(context, BaseModel):
            self._context = context.__class__
            self._values = {
                k: v if type(v) in _EXACT_ATOMS else _snapshot_value(v)
                for k, v in context.__dict__.items()
            }
        else:
            self._context = None
            self._values = {"": fork_value(context)}

    def changed(self, context: Any, fields: Iterable[str], *,
                appended: Container[str] = ()) -> list[str]:
        """Which of ``fields`` of ``context`` differ from this snapshot, by the merge's
        change detection: untouched frames share their buffers with the snapshot, so
        they compare in O(columns), whatever their size. A field in ``appended`` counts
        as changed only when its existing items were rewritten (a log may grow)."""
        if self._context is None:
            return []
        now, out = context.__dict__, []
        for name in fields:
            if name not in now or name not in self._values:
                continue
            old, new = self._values[name], now[name]
            if isinstance(old, _EmptyFrame):
                same = (isinstance(new, pd.DataFrame) and new.empty
                        and old.index.identical(new.index) and old.columns.identical(new.columns))
            elif name in appended and isinstance(old, list) and isinstance(new, list):
                same = len(new) >= len(old) and values_equal(new[:len(old)], old)
            else:
                same = values_equal(old, new)
            if not same:
                out.append(name)
        return out

    def restore(self) -> Any:
        """The context as it was when the snapshot was taken."""
        if self._context is None:
            return self._values[""]
        values = {
            k: v.restore() if isinstance(v, _EmptyFrame) else v for k, v in self._values.items()
        }
        return self._context.model_construct(None, **values)
