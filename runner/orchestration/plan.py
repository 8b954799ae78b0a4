"""Compile a manifest pipeline into an immutable :class:`Plan`.

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

import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Union

import pandas as pd
from pydantic import BaseModel

from runner.context import Context, field_rules
from runner.errors import ModuleImportError, PlanError, Problem, RegistryError
from runner.manifest import (
    BUILTIN_RULES,
    MAX_PLAN_STEPS,
    Manifest,
    PipelineSpec,
    format_path,
    parse_memory,
)
from runner.manifest_json import MAX_PROBLEMS, capped
from runner.merge import RuleFn
from runner.registry import (
    REGISTRY,
    AdapterEntry,
    StageEntry,
    StageRegistry,
    add_module_folders,
    import_object,
)
from runner.words import did_you_mean

__all__ = [
    "AdapterStep",
    "Branch",
    "ParallelGroup",
    "PipelineStep",
    "Plan",
    "StageStep",
    "Step",
    "compile_all",
    "compile_plan",
]

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class StageStep:
    """Run one registered stage."""

    entry: StageEntry
    path: str
    where: str

    @property
    def name(self) -> str:
        return self.entry.name


@dataclass(frozen=True)
class AdapterStep:
    """Map the context from one type to another between pillars."""

    adapter: AdapterEntry
    path: str
    where: str

    @property
    def name(self) -> str:
        return f"adapt:{self.adapter.source.__name__}->{self.adapter.target.__name__}"


@dataclass(frozen=True)
class PipelineStep:
    """A nested pipeline, expanded in place; its name is kept for display and spans."""

    pipeline: str
    path: str
    where: str
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
    resources: Mapping[str, Any] = field(default_factory=lambda: FrozenRules({}))
    """What the branch asks of a parallel executor: num_cpus, num_gpus, memory (bytes),
    max_retries, resources (custom); empty when the manifest asks nothing."""

    @property
    def label(self) -> str:
        return " -> ".join(s.name for s in self.steps)

    @property
    def display(self) -> str:
        return f"{self.path} ({self.label})"


@dataclass(frozen=True)
class ParallelGroup:
    """Branches that run on forks of one context, then merge."""

    path: str
    where: str
    pipeline: str
    branches: tuple[Branch, ...]
    rules: Mapping[str, str | RuleFn]
    merge_adapter: StageEntry | None

    @property
    def name(self) -> str:
        return f"parallel[{len(self.branches)}]"


class FrozenRules(Mapping[str, Any]):
    """Read-only field -> rule mapping that, unlike ``MappingProxyType``, pickles."""

    __slots__ = ("_rules",)

    def __init__(self, rules: Mapping[str, Any]) -> None:
        self._rules = dict(rules)

    def __getitem__(self, key: str) -> Any:
        return self._rules[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def __getstate__(self) -> dict[str, Any]:
        return self._rules

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._rules = state

    def __repr__(self) -> str:
        return f"FrozenRules({self._rules!r})"


Step = Union[StageStep, AdapterStep, PipelineStep, ParallelGroup]  # noqa: UP007 - forward refs


@dataclass(frozen=True)
class Plan:
    """What to run, with no data: a pipeline compiled against a registry."""

    pipeline: str
    context_type: type[Any]
    steps: tuple[Step, ...]
    manifest_digest: str = ""
    description: str | None = None

    def walk(self) -> Iterator[Step]:
        """Every step, depth first, in plan order."""
        yield from _walk(self.steps)

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


def _walk(steps: tuple[Step, ...]) -> Iterator[Step]:
    for step in steps:
        yield step
        if isinstance(step, PipelineStep):
            yield from _walk(step.steps)
        elif isinstance(step, ParallelGroup):
            for branch in step.branches:
                yield from _walk(branch.steps)


def _placed(steps: tuple[Step, ...], prefix: str) -> tuple[Step, ...]:
    """Template steps placed under ``prefix``: each path gets it in front, and a nested
    pipeline's own (shared, unplaced) steps go under ``<its path>/<its name>``."""
    return tuple(_place(step, prefix) for step in steps)


def _place(step: Step, prefix: str) -> Step:
    path = prefix + step.path
    if isinstance(step, PipelineStep):
        return replace(step, path=path, steps=_placed(step.steps, f"{path}/{step.pipeline}"))
    if isinstance(step, ParallelGroup):
        branches = tuple(replace(b, path=prefix + b.path, steps=_placed(b.steps, prefix))
                         for b in step.branches)
        return replace(step, path=path, branches=branches)
    return replace(step, path=path)


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
    the manifest, and only :func:`_placed` (once per compiled plan) expands them."""

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
            return StageStep(entry, path, format_path(loc)), ctype
        inner_type = self.context_type(name, spec, ctype)
        if not issubclass(ctype, inner_type):
            adapter = self.registry.find_adapter(ctype, inner_type)
            if adapter is None:
                self.fail(loc, f"pipeline {name!r} takes a {inner_type.__name__} but receives a "
                          f"{ctype.__name__}: register a context adapter "
                          f"{ctype.__name__} -> {inner_type.__name__}")
                return None, ctype
            out.append(AdapterStep(adapter, f"{path}:adapter", format_path(loc)))
        template = self.template(name, ctype, loc)
        if template is None:
            return None, ctype
        return (PipelineStep(name, path, format_path(loc), inner_type, template.steps),
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
            branches.append(Branch(j, f"{path}[{j}]", steps,
                                   self.branch_resources(pipeline, spec, steps)))
        rules = self.rules(pipeline, spec, ctype)
        group = ParallelGroup(path, format_path(loc), pipeline, tuple(branches),
                              FrozenRules(rules), adapter)
        if adapter is None:
            self.check_writes(group, loc)
        return group

    def branch_resources(self, pipeline: str, spec: PipelineSpec,
                         steps: tuple[Step, ...]) -> Mapping[str, Any]:
        """The most that the pipeline's ``resources`` ask for any stage of the branch."""
        if not spec.resources:
            return FrozenRules({})
        wanted = [spec.resources["*"]] if "*" in spec.resources else []
        wanted += [spec.resources[s.name] for s in _walk(steps)
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
            out["resources"] = FrozenRules(custom)
        return FrozenRules(out)

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
            problem = _rule_misfit(ctype, fname, rule)
            if problem:
                where = ("pipelines", pipeline, "merge", fname) if fname in spec.merge else (
                    "pipelines", pipeline)
                self.fail(where, problem)
        return rules

    def check_writes(self, group: ParallelGroup, loc: Loc) -> None:
        writers: dict[str, list[int]] = {}  # field -> branches writing it (no pairwise sweep)
        for branch in group.branches:
            for fname in _branch_writes(branch.steps):
                if group.rules.get(fname, "error") == "error":
                    writers.setdefault(fname, []).append(branch.index)
        clashes = sorted((i, j, fname) for fname, who in writers.items()
                         for n, i in enumerate(who) for j in who[n + 1:])
        for i, j, fname in clashes[:MAX_PROBLEMS]:
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


def _branch_writes(steps: tuple[Step, ...]) -> set[str]:
    out: set[str] = set()
    for step in _walk(steps):
        if isinstance(step, StageStep) and step.entry.writes:
            out |= step.entry.writes
    return out


def _rule_misfit(ctype: type[Any], fname: str, rule: Any) -> str | None:
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


def _with_manifest_entries(manifest: Manifest, registry: StageRegistry) -> tuple[
    StageRegistry, list[Problem]
]:
    """A child registry that also holds the manifest's stages and adapters."""
    child = registry.child()
    problems: list[Problem] = []
    source = Path(manifest.source)
    if source.is_file():  # stage modules resolve relative to the manifest's folder
        add_module_folders([source.resolve().parent], why="the manifest's folder")
    broken: dict[str, str] = {}  # a module that failed to import: its traceback once
    for name, target in manifest.stages.items():
        loc = format_path(("stages", name))
        module = target.partition(":")[0]
        if module in broken:
            problems.append(Problem(loc, f"module {module!r} failed to import: see "
                                         f"{broken[module]}"))
            continue
        try:
            fn = import_object(target)
            meta = getattr(fn, "__runner_stage__", None)
            child.register(name, fn, origin=f"manifest {loc}",
                           reads=meta.reads if meta else (),
                           writes=meta.writes if meta else None,
                           kind=meta.kind if meta else "stage",
                           imports=meta.imports if meta else (), replace_shipped=True)
        except RegistryError as exc:
            problems.append(Problem(loc, str(exc)))
            if isinstance(exc, ModuleImportError):
                broken[exc.module] = loc
    for i, spec in enumerate(manifest.adapters):
        loc = format_path(("adapters", i))
        try:
            source, target, fn = (import_object(p) for p in (spec.from_, spec.to, spec.fn))
            child.register_adapter(source, target, fn, origin=f"manifest {loc}")
        except RegistryError as exc:
            problems.append(Problem(loc, str(exc)))
    return child, problems


def compile_plan(
    manifest: Manifest, pipeline: str, *, registry: StageRegistry | None = None
) -> Plan:
    """Compile one pipeline; raise :class:`PlanError` listing every problem."""
    if pipeline not in manifest.pipelines:
        raise PlanError([Problem("pipelines", f"no pipeline named {pipeline!r}"
                                 + _close(pipeline, manifest.pipelines))],
                        source=manifest.source)
    reg, problems = _with_manifest_entries(manifest, registry or REGISTRY)
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
    return Plan(pipeline, ctype, _placed(template.steps, pipeline), manifest.digest,
                spec.description)


def compile_all(
    manifest: Manifest, *, registry: StageRegistry | None = None
) -> dict[str, Plan]:
    """Compile every pipeline, reporting the problems of all of them at once (each
    included pipeline is compiled once, whatever includes it)."""
    reg, entry_problems = _with_manifest_entries(manifest, registry or REGISTRY)
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
