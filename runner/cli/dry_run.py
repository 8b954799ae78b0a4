"""``runner run P --dry-run [--cache]``: the steps a run would run, running none of them
and writing no run.

With ``--cache`` each stage is said cached or why it would run
(:meth:`runner.cache.step_cache.StepCache.explain`: "its code changed", "input prices
changed", "never run with the cache"). The main line is walked in order: a step that
hits has its outputs restored (read from the store, as a run would), so the next
step's key is exact; after a miss the missed step's outputs are unknown, so a later
step that reads a field it writes (its declared ``writes``; undeclared: every field)
"would run: input X is recomputed by S". Adapters are not cached: they run on a known
context (they only map fields), and a merge of branches that all hit is made as the
run would make it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from runner.cli.json_stdout import print_json
from runner.cli.markup import escape
from runner.cli.output import err, out
from runner.cli.parsing import open_sdk, params, root_context

if TYPE_CHECKING:
    from runner.cache.step_cache import StepCache
    from runner.orchestration.memo import FieldDigests
    from runner.orchestration.plan import ParallelGroup, StageStep, Step

__all__ = ["DryRunOptions", "StepOutlook", "dry_run", "walk_outlook"]



class DryRunOptions(Protocol):
    """What ``--dry-run`` reads of ``runner run``'s options."""

    pipeline: str
    manifest: str | None
    artifacts: str | None
    storage_option: list[str] | None
    path: list[Path] | None
    allow_unsigned: bool
    force: bool
    cache: bool | None
    from_step: str | None
    origin: str | None
    to_step: str | None
    param: list[str] | None
    data: str | None
    as_json: bool


@dataclass(frozen=True)
class StepOutlook:
    """What a run would do with one step."""

    path: str
    name: str
    kind: str
    status: str
    """``cached``, ``would run``, or ``done`` (by the origin run, for ``--from``)."""
    reasons: tuple[str, ...] = ()
    branch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name, "kind": self.kind,
                "status": self.status, "reasons": list(self.reasons), "branch": self.branch}


@dataclass
class _Walk:
    """The walk's state: the step cache (None: no ``--cache``), the fields recomputed by
    steps that miss (field -> the step), and what cut the context off entirely."""

    cache: StepCache | None
    digests: FieldDigests
    """What the run's keys would know without hashing (see :class:`FieldDigests`)."""
    done: frozenset[str] = frozenset()
    lines: list[StepOutlook] = field(default_factory=list)
    recomputed: dict[str, str] = field(default_factory=dict)
    lost: str | None = None
    """A step after which nothing is known (an adapter fed by recomputed fields)."""

    def steps(self, steps: tuple[Step, ...], ctx: Any, branch: str | None) -> Any:
        from runner.orchestration.plan import AdapterStep, PipelineStep, StageStep

        for step in steps:
            if step.path in self.done:
                kind = type(step).__name__.removesuffix("Step").lower()
                self._say(step, kind.replace("parallelgroup", "group"), "done",
                          ["by the origin run"], branch)
            elif isinstance(step, StageStep):
                ctx = self._stage(step, ctx, branch)
            elif isinstance(step, AdapterStep):
                ctx = self._adapter(step, ctx, branch)
            elif isinstance(step, PipelineStep):
                ctx = self.steps(step.steps, ctx, branch)
            else:
                ctx = self._group(step, ctx, branch)
        return ctx

    def _say(self, step: Any, kind: str, status: str, reasons: list[str],
             branch: str | None) -> None:
        self.lines.append(StepOutlook(step.path, step.name, kind, status, tuple(reasons),
                                      branch))

    def _stage(self, step: StageStep, ctx: Any, branch: str | None) -> Any:
        entry = step.entry
        if self.cache is None:
            self._say(step, "stage", "would run", [], branch)
            return ctx
        stale = self._stale_reads(step, ctx) if self.lost is None else []
        from runner.orchestration.memo import apply_hit

        unkeyed = None
        try:
            key = self.cache.key(entry, ctx, known=self.digests.known(ctx)) \
                if self.lost is None and not stale else None
        except Exception as exc:  # as the run: it would run uncached (and say why there)
            key, unkeyed = None, f"no cache key ({type(exc).__name__}: {exc})"
        if key is not None:
            self.digests.learn(ctx, key.digests)
        if unkeyed is not None:
            reasons = [unkeyed]
        elif self.lost is not None:
            reasons = [f"its context is recomputed by {self.lost}"]
        elif stale:
            reasons = _recomputed(stale, self.recomputed)
        elif key is None:
            reasons = ["its stage is not cached (cache=False)"]
        else:
            outputs = self.cache.lookup(key)
            if outputs is not None:
                self._say(step, "stage", "cached", [], branch)
                return apply_hit(outputs, ctx, self.digests)
            reasons = self.cache.explain(key)
        self._say(step, "stage", "would run", reasons, branch)
        fields = type(ctx).model_fields if entry.writes is None else entry.writes
        self.recomputed.update({name: entry.name for name in fields
                                if name not in self.recomputed})
        return ctx

    def _stale_reads(self, step: StageStep, ctx: Any) -> list[str]:
        from runner.cache.keys import read_fields
        from runner.declared import field_of

        fields = dict.fromkeys(map(field_of, read_fields(step.entry, ctx)))
        return [name for name in fields if name in self.recomputed]

    def _adapter(self, step: Any, ctx: Any, branch: str | None) -> Any:
        """Adapters are not cached; one fed only known fields is run (a mapping)."""
        self._say(step, "adapter", "would run", ["adapters are not cached"], branch)
        if self.cache is None or self.lost is not None:
            return ctx
        if self.recomputed:
            self.lost = step.name
            return ctx
        self.digests.forget()  # the run would run it: it may change any field
        return step.adapter.fn(ctx)

    def _group(self, group: ParallelGroup, ctx: Any, branch: str | None) -> Any:
        from runner.context import fork_context

        self.digests.forget()  # as the run does before a group
        before = dict(self.recomputed)
        results = []
        for b in group.branches:
            self.recomputed = dict(before)  # a branch sees its own misses only
            results.append((b, self.steps(b.steps, fork_context(ctx), b.path)))
            before |= self.recomputed
        self.recomputed = before
        if self.cache is None or self.lost is not None:
            return ctx
        missed = [line for line in self.lines if line.branch in {b.path for b in group.branches}
                  and line.status == "would run"]
        if missed:
            self.recomputed.update({name: f"{group.path} (merge)"
                                    for name in type(ctx).model_fields
                                    if name not in self.recomputed})
            return ctx
        merged = _merge(group, ctx, results)
        self.digests.forget()  # the merge ran code (a merge adapter: the user's)
        return merged


def _recomputed(stale: list[str], by: dict[str, str]) -> list[str]:
    """``input X is recomputed by S`` (``inputs X, Y, Z and 3 more``), one line per S."""
    steps: dict[str, list[str]] = {}
    for name in stale:
        steps.setdefault(by[name], []).append(name)
    reasons = []
    for step, names in steps.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        reasons.append(f"input{'s' if len(names) > 1 else ''} {shown} "
                       f"{'are' if len(names) > 1 else 'is'} recomputed by {step}")
    return reasons


def _merge(group: ParallelGroup, ctx: Any, results: list[tuple[Any, Any]]) -> Any:
    """The merge of branches that all hit, as the run would make it."""
    from runner.merge import BranchValue, merge_contexts

    if group.merge_adapter is not None:
        return group.merge_adapter.fn(ctx, [c for _, c in results])
    values = [BranchValue(b.display, b.index, c) for b, c in results]
    return merge_contexts(ctx, values, group.rules, group=group.path)


def walk_outlook(plan: Any, context: Any, *, cache: StepCache | None,
                 done: frozenset[str] = frozenset()) -> list[StepOutlook]:
    """What a run of ``plan`` from ``context`` would do with each step, in order."""
    from runner.orchestration.memo import FieldDigests

    walk = _Walk(cache=cache, digests=FieldDigests(), done=done)
    walk.steps(plan.steps, context, None)
    return walk.lines


def _start(options: DryRunOptions) -> tuple[Any, Any, Any, frozenset[str], Any]:
    """The SDK, the plan to walk, the context it starts with, the steps done before it
    (``--from``) and the store (None without ``--cache`` or ``--from``)."""
    from runner.orchestration.plan.slicing import partial_run

    sdk = open_sdk(options.manifest, artifacts=options.artifacts,
                   storage_option=options.storage_option, path=options.path,
                   allow_unsigned=options.allow_unsigned)
    whole = sdk.plan(options.pipeline)
    part = partial_run(whole, from_step=options.from_step, origin=options.origin,
                       to_step=options.to_step)
    plan = part.plan if part is not None else whole
    store = sdk.store() if options.cache or options.from_step else None
    if part is not None and part.origin is not None and store is not None:
        from runner.artifacts.origin import prepare_origin

        state, _ = prepare_origin(store, part, whole, force=options.force,
                                  allow_unsigned=options.allow_unsigned)
        return sdk, plan, state.context, state.completed, store
    data = [f"data={options.data}"] if options.data else []
    root = root_context(plan, params([*(options.param or []), *data]))
    root = root if root is not None else plan.context_type()
    sdk.check_data(options.pipeline, root)  # as the run would: a missing file is said first
    return sdk, plan, root, frozenset(), store


def dry_run(options: DryRunOptions) -> None:
    """Print (or ``--json``) the steps a run would run; nothing runs, nothing is written."""
    sdk, plan, context, done, store = _start(options)
    cache = sdk.step_cache(options.pipeline, cache=True, store=store) \
        if options.cache and store is not None else None
    lines = walk_outlook(plan, context, cache=cache, done=done)
    running = [line for line in lines if line.status == "would run"]
    if options.as_json:
        print_json({"pipeline": plan.pipeline, "dry_run": True, "cache": cache is not None,
                    "steps": [line.to_dict() for line in lines],
                    "would_run": len(running)})
        return
    for line in lines:
        why = f": {'; '.join(line.reasons)}" if line.reasons else ""
        indent = "    " if line.branch is not None else "  "
        out.print(f"{indent}{escape(line.path)}  {escape(line.name)}  {line.status}"
                  f"{escape(why)}", highlight=False, soft_wrap=True)
    cached = sum(1 for line in lines if line.status == "cached")
    err.print(f"dry run of {escape(plan.pipeline)}: {len(running)} of {len(lines)} steps "
              f"would run" + (f", {cached} cached" if cache is not None else "")
              + "; nothing ran, no run was written" + (f" (store {sdk.store().url})"
                                                         if cache is not None else ""))
