"""The engine's side of the step cache: what it is handed, and what it hands back.

The front door builds the cache on the run's store (:class:`runner.cache.StepCache`)
and hands it to :class:`~runner.orchestration.runner.DAGRunner`, as it hands the
forensics writer: the engine never imports :mod:`runner.cache`. Per stage step the
step loop asks :meth:`StepMemo.key` (None: the stage is not cached in this run), then
:meth:`StepMemo.lookup`: a hit's ``apply(context)`` sets what the stage would have
written, the stage is not called; a miss runs it and :meth:`StepMemo.fill` keeps
what it wrote (:func:`step_outputs`). Adapters and merges are never cached: they are
recomputed from their (cached) inputs.

:func:`walk_cached` is how a parallel group's branch completes on the driver when
every step of it is a hit, so a fully cached group starts no worker.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from runner.context import Snapshot, fork_context
from runner.orchestration.plan import PipelineStep, StageStep

if TYPE_CHECKING:
    from runner.orchestration.plan import Step
    from runner.registry import StageEntry

__all__ = ["TRAIL", "Before", "Hit", "Keyed", "StepMemo", "fill", "step_key", "step_outputs",
           "walk_cached", "written_fields"]

log = logging.getLogger("runner")

TRAIL = "audit_trail"
"""The log-like field whose new lines a step's cache entry keeps, appended on a hit."""


class Keyed(Protocol):
    """A step's cache key (``key``: 64 hex digits), as :meth:`StepMemo.key` makes it."""

    @property
    def key(self) -> str: ...


class Hit(Protocol):
    """What a hit gives the step loop: the step's outputs, set on a context, and for
    each field set from a stored object, that object as a checkpoint names it
    (``format``, ``object``, ``rows``, ``bytes``, ``series_name``): the step's
    checkpoint names those objects rather than encoding the fields again."""

    @property
    def objects(self) -> Mapping[str, Mapping[str, Any]]: ...

    def apply(self, context: Any) -> Any: ...


class StepMemo(Protocol):
    """The step cache as the engine is handed it. Pickles: it travels with branches to
    worker processes and Ray."""

    def key(self, entry: StageEntry, context: BaseModel) -> Keyed | None:
        """The step's key; None when this run does not cache the stage."""

    def lookup(self, step: Any) -> Hit | None:
        """What a cached run of ``step`` (a :meth:`key`) wrote, or None."""

    def fill(self, step: Any, outputs: Mapping[str, Any], *,
             appended: Mapping[str, list[Any]] | None = None) -> bool:
        """Keep what the step wrote; True when this call wrote the entry."""


def written_fields(held: Mapping[str, Any], before: Snapshot, context: Any, *,
                   skip: Container[str] = (TRAIL,)) -> list[str]:
    """The fields a step wrote, to keep as its outputs: those whose value changed, and
    those given a new object even of an equal value. ``held`` is the context's fields
    as they were before the step (the objects themselves, ``dict(context.__dict__)``),
    ``before`` its snapshot. A write of an equal value is still the step's output: on a
    hit it must be restored whatever the field holds then (an earlier step may have
    changed it since the entry was filled)."""
    now = context.__dict__
    changed = set(before.changed(context, now))
    return [name for name in now if name not in skip
            and (name in changed or name not in held or now[name] is not held[name])]


@dataclass(frozen=True)
class Before:
    """A context as a keyed step received it: what :func:`step_outputs` compares with."""

    held: dict[str, Any]
    snapshot: Snapshot
    trail: int | None
    """How many lines the audit trail had (None: the context has no list there)."""

    @classmethod
    def of(cls, context: Any, snapshot: Snapshot | None) -> Before:
        trail = context.__dict__.get(TRAIL)
        return cls(dict(context.__dict__), snapshot or Snapshot(context),
                   len(trail) if isinstance(trail, list) else None)


def step_outputs(before: Before, out: Any) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """What a step wrote: the fields it set, and the lines it appended to the audit
    trail (a trail whose earlier lines it rewrote is kept whole, as a field it set)."""
    now = out.__dict__
    values = {name: now[name] for name in written_fields(before.held, before.snapshot, out)}
    appended: dict[str, list[Any]] = {}
    trail = now.get(TRAIL)
    if before.trail is not None and isinstance(trail, list):
        if before.snapshot.changed(out, [TRAIL], appended={TRAIL}):
            values[TRAIL] = trail
        elif len(trail) > before.trail:
            appended[TRAIL] = trail[before.trail:]
    elif TRAIL in now and now.get(TRAIL) is not before.held.get(TRAIL):
        values[TRAIL] = trail
    return values, appended


def step_key(memo: StepMemo, step: StageStep, context: Any) -> Keyed | None:
    """The key of ``step`` on ``context``, or None (not cached here, or a context whose
    fields cannot be hashed: said once in the log, and the step simply runs)."""
    if not isinstance(context, BaseModel):
        return None
    try:
        return memo.key(step.entry, context)
    except Exception as exc:
        log.warning("step cache: no key for %s (%s: %s): it runs uncached", step.path,
                    type(exc).__name__, exc)
        return None


def fill(memo: StepMemo, step: StageStep, key: Keyed, before: Before, out: Any) -> None:
    """Keep what ``step`` wrote under ``key``; a fill that fails is a warning (the step
    ran, the run goes on: the next run runs it again)."""
    try:
        values, appended = step_outputs(before, out)
        memo.fill(key, values, appended=appended)
    except Exception as exc:
        log.warning("step cache: could not keep the outputs of %s (%s: %s)", step.path,
                    type(exc).__name__, exc)


def walk_cached(steps: Sequence[Step], context: Any, memo: StepMemo,
                ) -> dict[str, tuple[Keyed, Hit]] | None:
    """Each stage step's key and hit, walking ``steps`` on a fork of ``context`` from
    the cache alone; None when a step is not a hit (a miss, a stage not cached, an
    adapter, a nested group): the branch must run somewhere."""
    found: dict[str, tuple[Keyed, Hit]] = {}
    ctx = fork_context(context)
    todo = list(steps)
    while todo:
        step = todo.pop(0)
        if isinstance(step, PipelineStep):
            todo[:0] = step.steps
            continue
        if not isinstance(step, StageStep):
            return None
        key = step_key(memo, step, ctx)
        try:
            hit = memo.lookup(key) if key is not None else None
        except Exception:  # the branch's own step reports it, where it runs
            return None
        if key is None or hit is None:
            return None
        ctx = hit.apply(ctx)
        found[step.path] = (key, hit)
    return found
