"""What a stage declares about the context, held to where it declares it.

A stage registered with ``writes=[...]`` changes no other field: the engine compares
the context the stage returns with the snapshot taken when it received it, where it
receives it, on every executor (:func:`check_writes`). Its ``reads=[...]`` are
written by an earlier step or are in the context the run starts with
(:func:`unmet_reads`), checked by ``runner validate`` and before a run starts. A
stage that declares nothing is trusted, as before.

Two fields are every stage's: ``audit_trail`` may grow (``ctx.log``), and a field a
stage both reads and writes may start empty (the stage adds to it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from runner.context import Snapshot, values_equal
from runner.errors import PlanError, Problem, UndeclaredWriteError
from runner.manifest import Manifest, iter_refs
from runner.orchestration.plan import (
    AdapterStep,
    ParallelGroup,
    PipelineStep,
    Plan,
    StageStep,
    Step,
)
from runner.registry import StageEntry

__all__ = ["LOG_FIELDS", "RUNNER_FIELDS", "check_manifest_reads", "check_reads", "check_writes",
           "included_pipelines", "provided_fields", "unmet_reads"]

LOG_FIELDS = frozenset({"audit_trail"})
"""Fields any stage may append to (``ctx.log``), declared or not."""
RUNNER_FIELDS = frozenset({"run_id", "workspace", "params", "audit_trail"})
"""Fields a run always starts with: set by the runner, ``--param``/``--data``, the log."""


# ---------------------------------------------------------------- writes, at run time


def check_writes(entry: StageEntry, snapshot: Snapshot | None,
                 received: Mapping[str, Any] | None, out: Any) -> None:
    """Raise :class:`UndeclaredWriteError` when a stage that declares ``writes``
    changed another field of ``out``. With the snapshot (the default), changes made
    in place are seen too; without it (``snapshots=False``) only replaced fields
    (``received`` holds the field values the stage received)."""
    declared = entry.writes
    if declared is None or not isinstance(out, BaseModel):
        return
    others = [name for name in out.__dict__ if name not in declared]
    if snapshot is not None:
        changed = snapshot.changed(out, others, appended=LOG_FIELDS)
    else:
        now, before = out.__dict__, received or {}
        changed = [name for name in others if name in before and name not in LOG_FIELDS
                   and now[name] is not before[name] and not values_equal(before[name],
                                                                          now[name])]
    if changed:
        raise UndeclaredWriteError(stage=entry.name, fields=changed, declared=sorted(declared))


# ---------------------------------------------------------------- reads, before a run


def provided_fields(context: Any) -> frozenset[str]:
    """The fields a run starting with ``context`` (an instance, or a type for its
    defaults) has: the runner's own and every one that holds something."""
    if isinstance(context, type):
        if not issubclass(context, BaseModel):
            return frozenset()
        values = {}
        for name, info in context.model_fields.items():
            try:
                values[name] = info.get_default(call_default_factory=True)
            except Exception:  # a required field, or a factory that needs arguments
                values[name] = None
    elif isinstance(context, BaseModel):
        values = dict(context.__dict__)
    else:
        return frozenset()
    return frozenset(name for name, value in values.items()
                     if name in RUNNER_FIELDS or not _empty(value))


def _empty(value: Any) -> bool:
    if value is None or (isinstance(value, str) and not value):
        return True
    empty = getattr(value, "empty", None)  # frames and series
    if isinstance(empty, bool):
        return empty
    return isinstance(value, list | dict | tuple | set | frozenset) and not value


def unmet_reads(plan: Plan, provided: Iterable[str]) -> list[Problem]:
    """Declared reads of ``plan``'s stages that no earlier step writes and the root
    context does not provide, one problem per stage and field, at the stage's step.

    A stage that does not declare its writes, a context adapter or a merge adapter
    may write anything: the fields after it are not checked."""
    problems: dict[Problem, None] = {}
    _walk(plan.steps, frozenset(provided), plan, problems)
    return list(problems)


def _walk(steps: Sequence[Step], have: frozenset[str] | None, plan: Plan,
          problems: dict[Problem, None]) -> frozenset[str] | None:
    for step in steps:
        if isinstance(step, StageStep):
            entry = step.entry
            if have is not None:
                missing = sorted(entry.fields_read - have - (entry.writes or frozenset()))
                if missing:
                    problems[Problem(step.where, _unmet(entry, missing, plan))] = None
            have = None if have is None or entry.writes is None else have | entry.writes
        elif isinstance(step, AdapterStep):
            have = None
        elif isinstance(step, PipelineStep):
            have = _walk(step.steps, have, plan, problems)
        elif isinstance(step, ParallelGroup):
            ends = [_walk(branch.steps, have, plan, problems) for branch in step.branches]
            if have is None or step.merge_adapter is not None or None in ends:
                have = None
            else:
                have = have.union(*(end for end in ends if end is not None))
    return have


def _unmet(entry: StageEntry, missing: list[str], plan: Plan) -> str:
    names = " and ".join(repr(n) for n in missing)
    return (f"stage {entry.name!r} reads {names}, which no earlier step of pipeline "
            f"{plan.pipeline!r} writes and the {plan.context_type.__name__} it starts with "
            f"does not hold: run a stage that writes {'them' if len(missing) > 1 else 'it'} "
            f"before this one, or drop {'them' if len(missing) > 1 else 'it'} from the "
            f"stage's reads={sorted(entry.reads)}")


def included_pipelines(manifest: Manifest) -> frozenset[str]:
    """Pipelines another pipeline of the manifest includes: checked where included."""
    return frozenset(ref.name for name, spec in manifest.pipelines.items()
                     for ref in iter_refs(spec.steps, ("pipelines", name, "steps"))
                     if ref.name in manifest.pipelines)


def check_manifest_reads(manifest: Manifest, plans: Mapping[str, Plan]) -> None:
    """``runner validate``: every pipeline run on its own from its default root context,
    except those another pipeline includes (checked in place); :class:`PlanError`."""
    nested = included_pipelines(manifest)
    problems: dict[Problem, None] = {}
    for name, plan in plans.items():
        if name not in nested:
            problems.update(dict.fromkeys(unmet_reads(plan, provided_fields(plan.context_type))))
    if problems:
        raise PlanError(list(problems), source=manifest.source)


def check_reads(plan: Plan, context: Any, *, source: str = "<manifest>") -> None:
    """Raise :class:`PlanError` (exit 2) when a run of ``plan`` starting with
    ``context`` (None: the default root) would read a field nothing provides."""
    problems = unmet_reads(plan, provided_fields(context if context is not None
                                                 else plan.context_type))
    if problems:
        raise PlanError(problems, source=source)
