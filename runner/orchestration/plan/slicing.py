"""Partial runs: a plan cut to run from one main-line step, or up to one, or both.

``runner run P --from STEP --origin RUN_ID`` starts a new run from the origin run's
checkpoint before STEP: the steps before it count as done, as for a resumed run
(:class:`~runner.orchestration.records.Resume`), so the engine needs no second
mechanism. ``--to STEP`` cuts the plan after STEP: the run ends, successfully, once
STEP is done. Both name a step of the main line (what the driver runs one after
another: a stage, an adapter or a whole parallel group), by name or by path; a step
inside a parallel group's branch is no point a run can start or stop at.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from runner.errors import UsageError
from runner.orchestration.plan.steps import PipelineStep, Plan, Step
from runner.words import did_you_mean

__all__ = ["PartialRun", "allowed_names", "find_main_step", "partial_run", "slice_to"]


@dataclass(frozen=True)
class PartialRun:
    """What a partial run is: the plan it runs (cut after ``to_step``), the main-line
    paths it takes as done (``done``: those before ``from_step``) and its origin run."""

    plan: Plan
    origin: str | None = None
    from_step: str | None = None
    """The path of the first step this run runs (None: the pipeline's first)."""
    to_step: str | None = None
    """The path of the last step this run runs (None: the pipeline's last)."""
    done: tuple[str, ...] = ()
    """Main-line paths before ``from_step``: their outcome is the origin's checkpoint."""

    def record(self, checkpoint: str | None = None) -> dict[str, Any]:
        """What run.json says of it: origin run and checkpoint, from and to (paths)."""
        return {"origin": self.origin, "checkpoint": checkpoint, "from_step": self.from_step,
                "to_step": self.to_step}


def allowed_names(plan: Plan) -> list[str]:
    """What ``--from`` and ``--to`` accept: every main-line step's path, and the names of
    the stages that appear once on the main line."""
    main = plan.main_line()
    names = [s.name for s in main]
    return [*(n for n in names if names.count(n) == 1), *(s.path for s in main)]


def find_main_step(plan: Plan, name: str, *, option: str) -> int:
    """The index in :meth:`Plan.main_line` of the step ``name`` names (its path, or its
    name when one main-line step has it); :class:`UsageError` otherwise."""
    main = plan.main_line()
    for i, step in enumerate(main):
        if step.path == name:
            return i
    matches = [i for i, step in enumerate(main) if step.name == name]
    if len(matches) == 1:
        return matches[0]
    where = f"{option} {name!r}"
    if matches:
        paths = ", ".join(main[i].path for i in matches)
        raise UsageError(f"{where}: pipeline {plan.pipeline!r} runs it {len(matches)} "
                         f"times; name one by its path ({paths})")
    inside = next((s for s in plan.walk() if name in (s.name, s.path)), None)
    allowed = allowed_names(plan)
    listed = ", ".join(allowed[:40]) + (", ..." if len(allowed) > 40 else "")
    if inside is not None:
        raise UsageError(f"{where} is inside a parallel group of pipeline {plan.pipeline!r}: "
                         f"a run starts or stops only at a main-line step ({listed})")
    raise UsageError(f"{where}: no such step in pipeline {plan.pipeline!r}"
                     f"{did_you_mean(name, allowed)}; its steps: {listed}")


def slice_to(plan: Plan, path: str) -> Plan:
    """``plan`` cut after the main-line step at ``path`` (nested pipelines cut inside)."""
    steps, found = _cut(plan.steps, path)
    if not found:
        raise ValueError(f"{path!r} is not a main-line step of {plan.pipeline!r}")
    return replace(plan, steps=steps)


def _cut(steps: tuple[Step, ...], path: str) -> tuple[tuple[Step, ...], bool]:
    out: list[Step] = []
    for step in steps:
        if step.path == path:
            return (*out, step), True
        if isinstance(step, PipelineStep):
            inner, found = _cut(step.steps, path)
            if found:
                return (*out, replace(step, steps=inner)), True
        out.append(step)
    return tuple(out), False


def partial_run(plan: Plan, *, from_step: str | None = None, origin: str | None = None,
                to_step: str | None = None) -> PartialRun | None:
    """The partial run the three options ask for (None: a whole run), checked against
    the plan: ``from_step`` and ``origin`` go together, ``from_step`` is not the first
    step (there is no checkpoint before it) and comes no later than ``to_step``."""
    if from_step is None and origin is None and to_step is None:
        return None
    if (from_step is None) != (origin is None):
        raise UsageError("--from STEP and --origin RUN_ID go together: the new run starts "
                         "from the origin run's checkpoint before STEP")
    main = plan.main_line()
    start = find_main_step(plan, from_step, option="--from") if from_step is not None else 0
    end = find_main_step(plan, to_step, option="--to") if to_step is not None else len(main) - 1
    if from_step is not None and start == 0:
        raise UsageError(f"--from {from_step!r} is the first step of pipeline "
                         f"{plan.pipeline!r}: there is no checkpoint before it; run without "
                         "--from")
    if start > end:
        raise UsageError(f"--from {from_step!r} comes after --to {to_step!r} in pipeline "
                         f"{plan.pipeline!r}")
    return PartialRun(
        plan=slice_to(plan, main[end].path) if to_step is not None else plan,
        origin=origin, from_step=main[start].path if from_step is not None else None,
        to_step=main[end].path if to_step is not None else None,
        done=tuple(s.path for s in main[:start]) if from_step is not None else ())
