"""The plan's types: what to run, with no data.

A :class:`Plan` holds a tree of steps: stages, context adapters, nested pipelines
(expanded in place, their names kept for display) and parallel groups of branches.
Each step knows its place twice: ``path`` in the plan (``pipeline[0][1]``, what
records, checkpoints and spans name) and ``where`` in the manifest (a JSON path, what
an error names). The types are frozen and pickle, so a plan travels to workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Union

from runner.merge import RuleFn
from runner.registry import AdapterEntry, StageEntry

__all__ = [
    "AdapterStep",
    "Branch",
    "FrozenMapping",
    "ParallelGroup",
    "PipelineStep",
    "Plan",
    "StageStep",
    "Step",
    "walk",
]


class FrozenMapping(Mapping[str, Any]):
    """A read-only mapping that, unlike ``MappingProxyType``, pickles: a group's merge
    rules, a branch's resources (and the custom resources within them)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any]) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getstate__(self) -> dict[str, Any]:
        return self._items

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._items = state

    def __repr__(self) -> str:
        return f"FrozenMapping({self._items!r})"


@dataclass(frozen=True, kw_only=True)
class _Placed:
    """Where a step stands: ``path`` in the plan, ``where`` in the manifest (JSON path)."""

    path: str
    where: str


@dataclass(frozen=True)
class StageStep(_Placed):
    """Run one registered stage."""

    entry: StageEntry

    @property
    def name(self) -> str:
        return self.entry.name


@dataclass(frozen=True)
class AdapterStep(_Placed):
    """Map the context from one type to another between pillars."""

    adapter: AdapterEntry

    @property
    def name(self) -> str:
        return f"adapt:{self.adapter.source.__name__}->{self.adapter.target.__name__}"


@dataclass(frozen=True)
class PipelineStep(_Placed):
    """A nested pipeline, expanded in place; its name is kept for display and spans."""

    pipeline: str
    context_type: type[Any]
    steps: tuple[Step, ...]

    @property
    def name(self) -> str:
        return self.pipeline


@dataclass(frozen=True)
class Branch:
    """One branch of a parallel group: steps run in sequence on a fork."""

    index: int
    path: str
    steps: tuple[Step, ...]
    resources: Mapping[str, Any] = field(default_factory=lambda: FrozenMapping({}))
    """What the branch asks of a parallel executor: num_cpus, num_gpus, memory (bytes),
    max_retries, resources (custom); empty when the manifest asks nothing."""

    @property
    def label(self) -> str:
        return " -> ".join(s.name for s in self.steps)

    @property
    def display(self) -> str:
        return f"{self.path} ({self.label})"


@dataclass(frozen=True)
class ParallelGroup(_Placed):
    """Branches that run on forks of one context, then merge."""

    pipeline: str
    branches: tuple[Branch, ...]
    rules: Mapping[str, str | RuleFn]
    merge_adapter: StageEntry | None

    @property
    def name(self) -> str:
        return f"parallel[{len(self.branches)}]"


Step = Union[StageStep, AdapterStep, PipelineStep, ParallelGroup]  # noqa: UP007 - forward refs


@dataclass(frozen=True)
class Plan:
    """What to run, with no data: a pipeline compiled against a registry."""

    pipeline: str
    context_type: type[Any]
    steps: tuple[Step, ...]
    manifest_digest: str = ""
    description: str | None = None
    cache: bool = False
    """The manifest asks for the step cache on this pipeline (``"cache": true``): its
    stages are cached unless the run says otherwise or a stage opts out."""

    def walk(self) -> Iterator[Step]:
        """Every step, depth first, in plan order."""
        yield from walk(self.steps)

    def context_types(self) -> dict[str, type[Any]]:
        """Every context type the plan declares, by ``module:qualname``: the only types
        a checkpoint of this plan may be loaded as (nothing is imported for a store)."""
        types = [self.context_type]
        for step in self.walk():
            if isinstance(step, PipelineStep):
                types.append(step.context_type)
            elif isinstance(step, AdapterStep):
                types += [step.adapter.source, step.adapter.target]
        return {f"{t.__module__}:{t.__qualname__}": t for t in types}

    @property
    def stages(self) -> list[StageStep]:
        return [s for s in self.walk() if isinstance(s, StageStep)]

    def main_line(self) -> list[Step]:
        """The steps the driver runs one after another (nested pipelines opened,
        parallel groups as one step each), in order: the points a run resumes from."""
        out: list[Step] = []

        def visit(steps: tuple[Step, ...]) -> None:
            for step in steps:
                if isinstance(step, PipelineStep):
                    visit(step.steps)
                else:
                    out.append(step)

        visit(self.steps)
        return out

    @cached_property
    def has_parallel(self) -> bool:
        return any(isinstance(s, ParallelGroup) for s in self.walk())

    @cached_property
    def last_group(self) -> str | None:
        """The path of the last parallel group on the driver's line (None: none)."""
        groups = [s.path for s in self.main_line() if isinstance(s, ParallelGroup)]
        return groups[-1] if groups else None


def walk(steps: tuple[Step, ...]) -> Iterator[Step]:
    """Every step of ``steps``, depth first, in plan order (nested and branch steps too)."""
    for step in steps:
        yield step
        if isinstance(step, PipelineStep):
            yield from walk(step.steps)
        elif isinstance(step, ParallelGroup):
            for branch in step.branches:
                yield from walk(branch.steps)


def placed(steps: tuple[Step, ...], prefix: str) -> tuple[Step, ...]:
    """Template steps placed under ``prefix``: each path gets it in front, and a nested
    pipeline's own (shared, unplaced) steps go under ``<its path>/<its name>``."""
    return tuple(_place(step, prefix) for step in steps)


def _place(step: Step, prefix: str) -> Step:
    path = prefix + step.path
    if isinstance(step, PipelineStep):
        return replace(step, path=path, steps=placed(step.steps, f"{path}/{step.pipeline}"))
    if isinstance(step, ParallelGroup):
        branches = tuple(replace(b, path=prefix + b.path, steps=placed(b.steps, prefix))
                         for b in step.branches)
        return replace(step, path=path, branches=branches)
    return replace(step, path=path)
