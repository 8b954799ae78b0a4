"""What a branch sends back from another process: only the fields it changed.

A branch on a worker receives the group's context and, as a rule, writes a few
fields of it (a forecast column) and reads the rest (46 MB of features on the
benchmark universe). Sending every field back would pickle, copy and unpickle
the unchanged frames once per branch, and leave the driver comparing them
cell by cell when it merges. So the worker runs the branch on a fork of what it
received (pandas copy-on-write: a stage that writes a frame writes a copy) and
replaces each large frame still over the very buffers it received with
:data:`SAME`; the driver puts its own value back (:func:`restore_untouched`),
the very object it sent, which the merge then sees as unchanged at no cost.
"""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd

__all__ = ["LARGE", "SAME", "detached", "restore_untouched", "strip_untouched"]

LARGE = 10_000
"""Frames with fewer cells than this come back whole: not worth checking."""

_SMALL_INDEX = 100_000
"""An index (or a MultiIndex level) up to this long may be compared by value."""


class _Same:
    """Stands for a field a branch left untouched: the driver puts its own value back."""

    def __reduce__(self) -> str:
        return "SAME"


SAME = _Same()


def _buffer(array: Any) -> tuple[Any, ...] | None:
    try:
        face = array.__array_interface__
    except AttributeError:
        return None
    return face["data"][0], face["shape"], face["strides"], face["typestr"]


def _index_untouched(new: pd.Index, old: pd.Index) -> bool:
    """The same labels: the same object, the same buffers, or (indexes are immutable)
    equal values when that is cheap to check."""
    if new is old:
        return True
    if type(new) is not type(old) or len(new) != len(old) or list(new.names) != list(old.names):
        return False
    if isinstance(new, pd.RangeIndex):
        return bool(new.equals(old))
    if isinstance(new, pd.MultiIndex):
        assert isinstance(old, pd.MultiIndex)
        return all(_index_untouched(a, b) for a, b in zip(new.levels, old.levels, strict=True)) \
            and all(_buffer(a) == _buffer(b) for a, b in zip(new.codes, old.codes, strict=True))
    if new.dtype != old.dtype:
        return False
    a, b = new.to_numpy(), old.to_numpy()
    if a.dtype != object and _buffer(a) is not None and _buffer(a) == _buffer(b):
        return True
    return len(new) <= _SMALL_INDEX and bool(new.equals(old))


def _frame_untouched(new: pd.DataFrame, old: pd.DataFrame) -> bool:
    """The same columns over the very same buffers as the frame the branch received
    (its stages got a copy-on-write fork of it, so same buffers means same values)."""
    if new.shape != old.shape or list(new.columns) != list(old.columns):
        return False
    if not _index_untouched(new.index, old.index):
        return False
    for i in range(new.shape[1]):
        a, b = new.iloc[:, i].to_numpy(), old.iloc[:, i].to_numpy()
        if a.dtype == object or _buffer(a) is None or _buffer(a) != _buffer(b):
            return False
    return True


def strip_untouched(ctx: Any, received: Any) -> Any:
    """``ctx`` (a branch's result, run on a fork of ``received``) with each large frame
    it left untouched replaced by :data:`SAME`."""
    fields = getattr(ctx, "__dict__", None)
    original = getattr(received, "__dict__", None)
    if not isinstance(fields, dict) or not isinstance(original, dict):
        return ctx
    for name, value in fields.items():
        before = original.get(name)
        if isinstance(value, pd.DataFrame) and isinstance(before, pd.DataFrame) \
                and value.size >= LARGE and _frame_untouched(value, before):
            fields[name] = SAME
    return ctx


def restore_untouched(ctx: Any, base: Any) -> Any:
    """Put ``base``'s value (what the driver sent) back in every :data:`SAME` field."""
    fields = getattr(ctx, "__dict__", None)
    if isinstance(fields, dict):
        for name, value in fields.items():
            if value is SAME or isinstance(value, _Same):
                fields[name] = base.__dict__[name]
    return ctx


def detached(ctx: Any, base: Any) -> Any:
    """``ctx`` with a copy of every field that is not ``base``'s own object: values a
    worker sent back and the transport read in place (Ray maps arrays from its object
    store, zero-copy), owned by this process once the transport is gone."""
    fields = getattr(ctx, "__dict__", None)
    if isinstance(fields, dict):
        sent = getattr(base, "__dict__", {})
        for name, value in fields.items():
            if value is not sent.get(name, _NOTHING):
                fields[name] = copy.deepcopy(value)
    return ctx


_NOTHING = object()

