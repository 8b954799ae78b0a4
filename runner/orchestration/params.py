"""A stage that names the run parameters it reads is held to them while it runs.

For a stage declared ``reads=["params.signal_clip", ...]`` (:mod:`runner.declared`),
``ctx.params`` is, for the call, a :class:`DeclaredParams`: a dict holding the declared
parameters the run has, and only those. Looking up any other name (``[]``, ``get``,
``in``, ``pop``, ``setdefault``) raises :class:`~runner.errors.UndeclaredReadError` at
the stage's line; iterating, ``len``, ``dict(...)``, printing and pickling see the
declared ones. What the stage can learn of the parameters is therefore exactly what
its step-cache key holds: a run that differs only in another parameter may take its
cached outputs. A stage's own copies (``ctx.model_copy(deep=True)``) keep the rule.

Once the stage returns (or raises), the context it received, and the one it returns,
hold the run's own ``params`` object again (also when the stage built its context anew
from what it saw); a stage that set or removed a parameter leaves a new dict, the
run's with its changes: a write of ``params``, which the step cache does not keep for
such a stage (its key holds only some parameters; the outputs would carry the others).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from runner.context import values_equal
from runner.declared import PARAMS
from runner.errors import UndeclaredReadError
from runner.registry import StageEntry

__all__ = ["DeclaredParams", "call_declaring"]

_MISSING = object()


class DeclaredParams(dict[str, Any]):
    """The run parameters a stage declares, in name order; others raise when looked up."""

    __slots__ = ("declared", "stage")

    def __init__(self, params: dict[str, Any], declared: Iterable[str], stage: str) -> None:
        self.declared = frozenset(declared)
        self.stage = stage
        super().__init__((name, params[name]) for name in sorted(self.declared)
                         if name in params)

    def _check(self, name: Any) -> None:
        if name not in self.declared:
            raise UndeclaredReadError(stage=self.stage, param=name,
                                      declared=sorted(self.declared))

    def __getitem__(self, name: str) -> Any:
        self._check(name)
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        self._check(name)
        return super().__contains__(name)

    def get(self, name: str, default: Any = None) -> Any:
        self._check(name)
        return super().get(name, default)

    def pop(self, name: str, default: Any = _MISSING) -> Any:
        self._check(name)
        return super().pop(name) if default is _MISSING else super().pop(name, default)

    def setdefault(self, name: str, default: Any = None) -> Any:
        self._check(name)
        return super().setdefault(name, default)

    def __reduce__(self) -> tuple[Any, ...]:  # copies and pickles keep the rule
        return (DeclaredParams, (dict(self), self.declared, self.stage))

    def __repr__(self) -> str:
        return f"{dict(self)!r}"


def call_declaring(entry: StageEntry, fn: Callable[[Any], Any], ctx: Any) -> Any:
    """``fn(ctx)`` with ``ctx.params`` held to ``entry``'s declared parameters; a stage
    that declares none by name is called as it is."""
    names = entry.params_read
    fields = getattr(ctx, "__dict__", None)
    if names is None or fields is None or type(fields.get(PARAMS)) is not dict:
        return fn(ctx)
    run_params = fields[PARAMS]
    fields[PARAMS] = DeclaredParams(run_params, names, entry.name)
    try:
        out = fn(ctx)
    finally:
        _give_back(fields, run_params, names)
    if out is not ctx:
        _give_back(getattr(out, "__dict__", {}), run_params, names)
    return out


def _give_back(fields: dict[str, Any], run_params: dict[str, Any],
               names: frozenset[str]) -> None:
    """Put the run's ``params`` back where the stage left what it saw of them: the
    :class:`DeclaredParams` (its own or a copy) or a dict made from one (a context it
    built anew). The stage saw only ``names``: a dict that holds them as the run does is
    the run's own object again; else a new dict, the run's with the stage's changes (it
    cannot have meant to drop parameters it never saw)."""
    held = fields.get(PARAMS)
    if held is run_params or not isinstance(held, dict):
        return
    seen = {name: run_params[name] for name in names if name in run_params}
    if dict.keys(held) == seen.keys() and all(
            values_equal(dict.__getitem__(held, n), v) for n, v in seen.items()):
        fields[PARAMS] = run_params
        return
    changed = {name: value for name, value in run_params.items() if name not in names}
    changed.update(dict.items(held))
    fields[PARAMS] = changed
