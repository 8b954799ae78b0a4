"""Compile a manifest pipeline into an immutable :class:`~runner.orchestration.plan.Plan`.

Nested pipelines are expanded (their names kept for display), stage names are
resolved in the StageRegistry, context adapters are inserted where the context
type changes, merge rules are attached to each parallel group, and branches
that declare writes of one field with no rule to merge it are refused here,
before anything runs. Every problem names its JSON path in the manifest.

Each pipeline is compiled and checked once per context type it receives (a
template with relative paths), then placed wherever it is included, so the
work grows with the plan, not with the number of paths through the manifest;
a pipeline expanding to more than ``MAX_PLAN_STEPS`` stage steps is refused
before it is expanded. The manifest bounds nesting (``MAX_NESTING``), so every
recursive walk over a plan stays far from Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from runner.context import Context, field_rules
from runner.errors import PlanError, Problem, RegistryError
from runner.manifest import (
    BUILTIN_RULES,
    MAX_PLAN_STEPS,
    Manifest,
    PipelineSpec,
    format_path,
)
from runner.manifest_json import MAX_PROBLEMS, capped
from runner.orchestration.plan.entries import with_manifest_entries
from runner.orchestration.plan.groups import branch_resources, rule_misfit, write_clashes
from runner.orchestration.plan.steps import (
    AdapterStep,
    Branch,
    FrozenMapping,
    ParallelGroup,
    PipelineStep,
    Plan,
    StageStep,
    placed,
)
from runner.registry import REGISTRY, StageEntry, StageRegistry, import_object
from runner.words import did_you_mean

if TYPE_CHECKING:
    from runner.orchestration.plan.steps import Step

__all__ = ["compile_all", "compile_plan"]

Loc = tuple[str | int, ...]


# ---------------------------------------------------------------- compiler


class _Problems:
    """Problems in the order found, each once (a set keeps adding them linear)."""

    def __init__(self, problems: Iterable[Problem] = ()) -> None:
        self.items: list[Problem] = []
        self._seen: set[Problem] = set()
        for problem in problems:
            self.add(problem)

    def add(self, problem: Problem) -> None:
        if problem not in self._seen:
            self._seen.add(problem)
            self.items.append(problem)


@dataclass(frozen=True)
class _Template:
    """One pipeline compiled for one incoming context type, and the problems found.

    Paths are relative to where it is placed (``[0]``, ``[1][0]``...); a nested
    pipeline's steps are its own template's, shared, so building costs as much as
    the manifest, and only :func:`~runner.orchestration.plan.steps.placed` (once per
    compiled plan) expands them."""

    steps: tuple[Step, ...]
    inner_type: type[Any]
    out_type: type[Any]
    problems: tuple[Problem, ...]


@dataclass
class _Compiler:
    manifest: Manifest
    registry: StageRegistry
    problems: _Problems = field(default_factory=_Problems)
    templates: dict[tuple[str, type[Any]], _Template] = field(default_factory=dict)
    """Shared by every pipeline :func:`compile_all` compiles."""
    building: set[str] = field(default_factory=set)
    failures: int = 0

    def fail(self, loc: Loc, message: str) -> None:
        self.failures += 1
        self.problems.add(Problem(format_path(loc), message))

    def template(self, name: str, ctype: type[Any], loc: Loc) -> _Template | None:
        """Pipeline ``name`` compiled once for ``ctype``; its problems count wherever used."""
        done = self.templates.get((name, ctype))
        if done is None:
            if name in self.building:  # only a manifest that skipped parse_manifest's checks
                self.fail(loc, f"pipeline includes itself: {name}")
                return None
            self.building.add(name)
            outer, self.problems = self.problems, _Problems()
            try:
                spec = self.manifest.pipelines[name]
                inner_type = self.context_type(name, spec, ctype)
                self.rules(name, spec, inner_type)  # overrides are checked even without a group
                steps, out_type = self.steps(name, spec.steps, inner_type,
                                             ("pipelines", name, "steps"), "")
                done = _Template(steps, inner_type, out_type, tuple(self.problems.items))
            finally:
                self.problems = outer
                self.building.discard(name)
            self.templates[(name, ctype)] = done
        for problem in done.problems:
            self.problems.add(problem)
        return done

    def context_type(self, name: str, spec: PipelineSpec, default: type[Any]) -> type[Any]:
        if spec.context is None:
            return default
        try:
            obj = import_object(spec.context)
        except RegistryError as exc:
            self.fail(("pipelines", name, "context"), str(exc))
            return default
        if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
            self.fail(("pipelines", name, "context"), f"{spec.context} is not a Context type")
            return default
        return obj

    def steps(
        self, pipeline: str, items: list[Any], ctype: type[Any], loc: Loc, prefix: str
    ) -> tuple[tuple[Step, ...], type[Any]]:
        out: list[Step] = []
        for i, item in enumerate(items):
            here, path = (*loc, i), f"{prefix}[{i}]"
            if isinstance(item, str):
                step, ctype = self.named(pipeline, item, ctype, here, path, out)
            else:
                step = self.group(pipeline, item, ctype, here, path)
            if step is not None:
                out.append(step)
        return tuple(out), ctype

    def named(
        self, pipeline: str, name: str, ctype: type[Any], loc: Loc, path: str, out: list[Step]
    ) -> tuple[Step | None, type[Any]]:
        spec = self.manifest.pipelines.get(name)
        entry = self.registry.get(name)
        if spec is not None and entry is not None:
            self.fail(loc, f"{name!r} names both a pipeline and a stage ({entry.origin})")
            return None, ctype
        if spec is None:
            if entry is None:
                if name not in self.manifest.stages:  # else: reported at its manifest entry
                    self.fail(loc, f"unknown stage or pipeline {name!r}{self.suggest(name)}")
                return None, ctype
            if entry.kind != "stage":
                self.fail(loc, f"{name!r} is a merge adapter, not a stage: "
                          f"name it in \"merge_adapter\"")
                return None, ctype
            return StageStep(entry=entry, path=path, where=format_path(loc)), ctype
        inner_type = self.context_type(name, spec, ctype)
        if not issubclass(ctype, inner_type):
            adapter = self.registry.find_adapter(ctype, inner_type)
            if adapter is None:
                self.fail(loc, f"pipeline {name!r} takes a {inner_type.__name__} but receives a "
                          f"{ctype.__name__}: register a context adapter "
                          f"{ctype.__name__} -> {inner_type.__name__}")
                return None, ctype
            out.append(AdapterStep(adapter=adapter, path=f"{path}:adapter",
                                   where=format_path(loc)))
        template = self.template(name, ctype, loc)
        if template is None:
            return None, ctype
        return (PipelineStep(pipeline=name, path=path, where=format_path(loc),
                             context_type=inner_type, steps=template.steps),
                template.out_type)

    def group(
        self, pipeline: str, items: list[Any], ctype: type[Any], loc: Loc, path: str
    ) -> ParallelGroup:
        spec = self.manifest.pipelines[pipeline]
        adapter = self.merge_adapter(pipeline, spec)
        branches = []
        for j, item in enumerate(items):
            here, bpath = (*loc, j), f"{path}[{j}]"
            if isinstance(item, str):
                found: list[Step] = []
                step, out_type = self.named(pipeline, item, ctype, here, bpath, found)
                steps = (*found, step) if step is not None else tuple(found)
            else:
                steps, out_type = self.steps(pipeline, item, ctype, here, bpath)
            if out_type is not ctype and adapter is None:
                self.fail((*loc, j), f"branch ends with a {out_type.__name__} but the group forked "
                          f"a {ctype.__name__}: declare a merge_adapter for pipeline {pipeline!r}")
            branches.append(Branch(j, bpath, steps, branch_resources(spec, steps)))
        rules = self.rules(pipeline, spec, ctype)
        group = ParallelGroup(path=path, where=format_path(loc), pipeline=pipeline,
                              branches=tuple(branches), rules=FrozenMapping(rules),
                              merge_adapter=adapter)
        if adapter is None:
            self.check_writes(group, loc)
        return group

    def check_resources(self, pipeline: str, spec: PipelineSpec) -> None:
        """Every stage named in a pipeline's ``resources`` is a registered stage."""
        for key in spec.resources:
            if key != "*" and self.registry.get(key) is None:
                self.fail(("pipelines", pipeline, "resources", key),
                          f"unknown stage {key!r}{self.suggest(key)}")

    def merge_adapter(self, pipeline: str, spec: PipelineSpec) -> StageEntry | None:
        if spec.merge_adapter is None:
            return None
        entry = self.registry.get(spec.merge_adapter)
        loc = ("pipelines", pipeline, "merge_adapter")
        if entry is None:
            self.fail(loc, f"unknown merge adapter {spec.merge_adapter!r}"
                      f"{self.suggest(spec.merge_adapter, kind='merge_adapter')}")
        elif entry.kind != "merge_adapter":
            self.fail(loc, f"{spec.merge_adapter!r} is a stage; register the adapter with "
                      "@merge_adapter (it receives the pre-fork context and the branches)")
            return None
        return entry

    def rules(self, pipeline: str, spec: PipelineSpec, ctype: type[Any]) -> dict[str, Any]:
        declared = field_rules(ctype)
        rules: dict[str, Any] = dict(declared)
        for fname, rule in spec.merge.items():
            loc = ("pipelines", pipeline, "merge", fname)
            if fname not in declared:
                self.fail(loc, f"{ctype.__name__} has no field {fname!r}"
                          + _close(fname, declared))
                continue
            if rule in BUILTIN_RULES:
                rules[fname] = rule
            else:
                try:
                    rules[fname] = import_object(rule)
                except RegistryError as exc:
                    self.fail(loc, str(exc))
        for fname, rule in rules.items():
            problem = rule_misfit(ctype, fname, rule)
            if problem:
                where = ("pipelines", pipeline, "merge", fname) if fname in spec.merge else (
                    "pipelines", pipeline)
                self.fail(where, problem)
        return rules

    def check_writes(self, group: ParallelGroup, loc: Loc) -> None:
        for i, j, fname in write_clashes(group)[:MAX_PROBLEMS]:
            # paths in the pipeline's own plan: the group is checked once, wherever it runs
            a, b = (f"{group.pipeline}{x.path} ({x.label})"
                    for x in (group.branches[i], group.branches[j]))
            self.fail(loc, f"branches {a} and {b} both write "
                      f"{fname!r}, which has merge rule 'error': give it a rule in "
                      f"pipelines.{_q(group.pipeline)}.merge or a merge_adapter")

    def suggest(self, name: str, kind: str = "stage") -> str:
        if self.failures > MAX_PROBLEMS:  # past what an error shows: spare the comparisons
            return ""
        names = list(self.manifest.pipelines) if kind == "stage" else []
        names += [e.name for e in self.registry if e.kind == kind]
        return _close(name, names)


def _q(name: str) -> str:
    return format_path([name])


def _close(name: str, candidates: Any) -> str:
    return did_you_mean(name, candidates)


def compile_plan(
    manifest: Manifest, pipeline: str, *, registry: StageRegistry | None = None
) -> Plan:
    """Compile one pipeline; raise :class:`PlanError` listing every problem."""
    if pipeline not in manifest.pipelines:
        raise PlanError([Problem("pipelines", f"no pipeline named {pipeline!r}"
                                 + _close(pipeline, manifest.pipelines))],
                        source=manifest.source)
    reg, problems = with_manifest_entries(manifest, registry or REGISTRY)
    return _compile(_Compiler(manifest, reg), pipeline, problems)


def _compile(compiler: _Compiler, pipeline: str, problems: list[Problem]) -> Plan:
    manifest = compiler.manifest
    size = manifest.stage_steps(pipeline)
    if size > MAX_PLAN_STEPS:  # refused before anything is expanded
        raise PlanError([Problem(
            format_path(("pipelines", pipeline)),
            f"expands to {size:,} stage steps once its nested pipelines are opened, more "
            f"than the limit of {MAX_PLAN_STEPS:,}")], source=manifest.source)
    compiler.problems = _Problems(problems)
    spec = manifest.pipelines[pipeline]
    ctype = compiler.context_type(pipeline, spec, Context)
    compiler.merge_adapter(pipeline, spec)
    compiler.rules(pipeline, spec, ctype)
    compiler.check_resources(pipeline, spec)
    template = compiler.template(pipeline, Context, ("pipelines", pipeline))
    if compiler.problems.items or template is None:
        raise PlanError(capped(compiler.problems.items), source=manifest.source)
    return Plan(pipeline, ctype, placed(template.steps, pipeline), manifest.digest,
                spec.description, cache=spec.cache)


def compile_all(
    manifest: Manifest, *, registry: StageRegistry | None = None
) -> dict[str, Plan]:
    """Compile every pipeline, reporting the problems of all of them at once (each
    included pipeline is compiled once, whatever includes it)."""
    reg, entry_problems = with_manifest_entries(manifest, registry or REGISTRY)
    compiler = _Compiler(manifest, reg)
    plans: dict[str, Plan] = {}
    problems = _Problems()
    for name in manifest.pipelines:
        try:
            plans[name] = _compile(compiler, name, entry_problems)
        except PlanError as exc:
            for problem in exc.problems:
                problems.add(problem)
    if problems.items:
        raise PlanError(capped(problems.items), source=manifest.source)
    return plans
