"""What a parallel group carries besides its steps: merge rules and resources.

Pure helpers of the compiler: the resources a branch asks of a parallel executor
(the most the pipeline's ``resources`` ask for any of its stages), whether a merge
rule fits its field's type, and which branches write the same field with no rule to
merge it (refused before anything runs).
"""

from __future__ import annotations

import typing
from typing import Any

import pandas as pd

from runner.manifest import PipelineSpec, parse_memory
from runner.orchestration.plan.steps import FrozenMapping, ParallelGroup, StageStep, Step, walk

__all__ = ["branch_resources", "rule_misfit", "write_clashes"]


def branch_resources(spec: PipelineSpec, steps: tuple[Step, ...]) -> FrozenMapping:
    """The most that the pipeline's ``resources`` ask for any stage of the branch."""
    if not spec.resources:
        return FrozenMapping({})
    wanted = [spec.resources["*"]] if "*" in spec.resources else []
    wanted += [spec.resources[s.name] for s in walk(steps)
               if isinstance(s, StageStep) and s.name in spec.resources]
    out: dict[str, Any] = {}
    custom: dict[str, float] = {}
    for want in wanted:
        for key in ("num_cpus", "num_gpus", "max_retries"):
            value = getattr(want, key)
            if value is not None:
                out[key] = max(out.get(key, value), value)
        if want.memory is not None:
            memory = parse_memory(want.memory)
            out["memory"] = max(out.get("memory", memory), memory)
        for name, amount in want.resources.items():
            custom[name] = max(custom.get(name, amount), amount)
    if custom:
        out["resources"] = FrozenMapping(custom)
    return FrozenMapping(out)


def rule_misfit(ctype: type[Any], fname: str, rule: Any) -> str | None:
    """Why ``rule`` cannot merge field ``fname`` of ``ctype``; None when it can."""
    if rule not in ("append", "concat_columns"):
        return None
    hint = typing.get_type_hints(ctype).get(fname)
    origin = typing.get_origin(hint) or hint
    if rule == "append" and origin is not list:
        return f"field {fname!r} is not a list, so rule 'append' cannot merge it"
    if rule == "concat_columns" and not (isinstance(origin, type)
                                         and issubclass(origin, pd.DataFrame)):
        return f"field {fname!r} is not a DataFrame, so rule 'concat_columns' cannot merge it"
    return None


def write_clashes(group: ParallelGroup) -> list[tuple[int, int, str]]:
    """Every pair of branches (by index, in order) that write one field whose rule is
    'error', with that field: sorted, found without a pairwise sweep of the branches."""
    writers: dict[str, list[int]] = {}  # field -> branches writing it
    for branch in group.branches:
        for fname in _branch_writes(branch.steps):
            if group.rules.get(fname, "error") == "error":
                writers.setdefault(fname, []).append(branch.index)
    return sorted((i, j, fname) for fname, who in writers.items()
                  for n, i in enumerate(who) for j in who[n + 1:])


def _branch_writes(steps: tuple[Step, ...]) -> set[str]:
    out: set[str] = set()
    for step in walk(steps):
        if isinstance(step, StageStep) and step.entry.writes:
            out |= step.entry.writes
    return out
