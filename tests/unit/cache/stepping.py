"""One step through the step cache, as the step loop takes it: key, look up, apply a
hit; else call the stage and fill the entry with what it wrote (and appended to the
audit trail). For tests that drive the cache without the engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runner.cache.outputs import written_fields
from runner.cache.step_cache import StepCache
from runner.context import Snapshot
from runner.registry import StageEntry


def step_through(cache: StepCache | None, entry: StageEntry, context: Any,
                 call: Callable[[Any], Any] | None = None) -> tuple[Any, bool]:
    """The context after the step, and whether the stage ran (``call``: how it is
    called, ``entry.fn`` by default)."""
    key = cache.key(entry, context) if cache is not None else None
    hit = cache.lookup(key) if cache is not None and key is not None else None
    if hit is not None:
        return hit.apply(context), False
    before, held = Snapshot(context), dict(context.__dict__)
    logged = len(context.audit_trail)
    context = (call or entry.fn)(context)
    if cache is not None and key is not None:
        written = written_fields(held, before, context)
        cache.fill(key, {n: getattr(context, n) for n in written},
                   appended={"audit_trail": context.audit_trail[logged:]})
    return context, True
