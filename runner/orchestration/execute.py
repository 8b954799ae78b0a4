"""The step loop, shared by the driver and every worker process.

``run_steps`` executes a sequence of plan steps; a parallel group hands its
branches to the loop's ``branches`` function (an executor's ``run_branches`` on
the driver, :func:`run_inline` inside a branch) and merges what they return.
Everything a worker needs travels in a picklable
:class:`~runner.orchestration.tasks.BranchTask`; :func:`execute_branch` runs one
wherever it lands. This module knows no executor: executors import it, never the
other way round.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from runner.context import Snapshot, fork_context
from runner.errors import ContextCollisionError, RunnerError
from runner.merge import BranchValue, merge_contexts
from runner.orchestration.contracts import check_writes
from runner.orchestration.hooks import RunHook, call_quietly
from runner.orchestration.memo import (
    Before,
    FieldDigests,
    Hit,
    Keyed,
    StepMemo,
    apply_hit,
    fill,
    step_key,
    walk_cached,
)
from runner.orchestration.params import call_declaring
from runner.orchestration.plan import AdapterStep, PipelineStep, StageStep
from runner.orchestration.records import RunInfo, StepRecord
from runner.orchestration.tasks import (
    BranchOutcome,
    BranchTask,
    CancelFlag,
    Cancelled,
    GroupTask,
    RunBranches,
    StepFailure,
)
from runner.tracebacks import user_trace

if TYPE_CHECKING:
    from runner.orchestration.plan import Branch, ParallelGroup, Step

__all__ = ["LoopState", "execute_branch", "notify", "run_inline", "run_steps"]


log = logging.getLogger("runner")


def _failure(name: str, path: str, kind: str, exc: BaseException, received: Any,
             code: Callable[..., Any] | None = None, store: bool = False) -> StepFailure:
    """What a failed step leaves: the error, the full traceback and the user's side of
    it (``code`` is the stage or adapter function that ran, when one did; ``store``: the
    store failed the step, see :attr:`StepFailure.store`)."""
    trace = user_trace(exc, code=code)
    return StepFailure(
        name=name, path=path, kind=kind, exc_type=type(exc).__name__, message=str(exc),
        tb="".join(traceback.format_exception(exc)), received=received, original=exc,
        pid=os.getpid(), where=trace.where, user_tb=trace.text if trace.frames else "",
        store=store,
    )


@dataclass(kw_only=True)
class LoopState:
    """The step loop's state in one process: the driver's main line, or one branch."""

    run: RunInfo
    cancel: CancelFlag
    branches: RunBranches
    """Runs a parallel group's branches: the executor's on the driver, inline in a branch."""
    executor: str
    """The executor's name, written in every step record."""
    hooks: Sequence[RunHook] = ()
    snapshots: bool = True
    records: list[StepRecord] = field(default_factory=list)
    pid: int = field(default_factory=os.getpid)
    branch: str | None = None
    """The branch this loop runs (None on the driver's main line of steps)."""
    completed: frozenset[str] = frozenset()
    """Main-line step paths a resumed run has already done: skipped, not run again."""
    warm: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Per parallel group path: modules the driver imports after the group (what the
    steps after it import, see :mod:`runner.orchestration.warm`)."""
    last_group: str | None = None
    """The path of the last parallel group on the driver's line of steps (None: none)."""
    cache: StepMemo | None = None
    """The step cache the front door handed the run (None: nothing is cached)."""
    found: Mapping[str, tuple[Keyed, Hit]] = field(default_factory=dict)
    """Hits already looked up, by step path (a branch the driver completes from the cache)."""
    digests: FieldDigests = field(default_factory=FieldDigests)
    """The content hashes of the context's fields known so far (keys hash the others)."""


def notify(loop: LoopState, method: str, *args: Any, path: str, ctx: Any) -> None:
    """Call one hook method on every hook; a hook that raises fails the run at ``path``
    (a checkpoint that cannot be written must not pass silently)."""
    for hook in loop.hooks:
        try:
            getattr(hook, method)(loop.run, *args)
        except Exception as exc:
            name = f"{type(hook).__name__}.{method}"
            raise _failure(name, path, "hook", exc, ctx) from exc


def _notify_quietly(loop: LoopState, method: str, *args: Any) -> None:
    """Hooks called while a failure is already on its way: their errors are logged."""
    call_quietly(loop.hooks, loop.run, method, *args)


def run_steps(steps: Sequence[Step], ctx: Any, loop: LoopState) -> Any:
    """Run steps in order: the output of step N is the input of step N+1."""
    for step in steps:
        if loop.cancel.is_set():
            raise Cancelled(step.path)
        if step.path in loop.completed:
            continue
        if isinstance(step, StageStep):
            ctx = _call(step, step.entry.fn, ctx, loop, "stage")
        elif isinstance(step, AdapterStep):
            ctx = _call(step, step.adapter.fn, ctx, loop, "adapter")
        elif isinstance(step, PipelineStep):
            ctx = _run_pipeline(step, ctx, loop)
        else:
            loop.digests.forget()  # the branches' code and the merge may change any field
            ctx = run_group(step, ctx, loop)
    return ctx


def _run_pipeline(step: PipelineStep, ctx: Any, loop: LoopState) -> Any:
    notify(loop, "on_pipeline_start", step, path=step.path, ctx=ctx)
    try:
        out = run_steps(step.steps, ctx, loop)
    except BaseException:
        _notify_quietly(loop, "on_pipeline_end", step, None)
        raise
    notify(loop, "on_pipeline_end", step, out, path=step.path, ctx=out)
    return out


def _call(step: StageStep | AdapterStep, fn: Callable[[Any], Any], ctx: Any, loop: LoopState,
          kind: str) -> Any:
    notify(loop, "on_step_start", step, path=step.path, ctx=ctx)
    start = time.time()
    key: Keyed | None = None
    snapshot: Snapshot | None = None
    before: Before | None = None
    hit: Hit | None = None
    consulting = True
    try:
        key, hit = _consult(step, ctx, loop)
        consulting = False
        if hit is not None:
            out = apply_hit(hit, ctx, loop.digests)
        else:
            snapshot = Snapshot(ctx) if loop.snapshots or key is not None else None
            before = Before.of(ctx, snapshot) if key is not None else None
            loop.digests.forget()  # the step's code may change any field in place
            out = _run_fn(step, fn, ctx, snapshot, kind)
    except Exception as exc:
        end = time.time()
        received = snapshot.restore() if snapshot is not None else ctx
        store = consulting and isinstance(exc, RunnerError)  # the cache's store, not the code
        failure = _failure(step.name, step.path, kind, exc, received,
                           code=None if store else fn, store=store)
        record = StepRecord(step.name, step.path, "failed", start, end, loop.executor,
                            loop.pid, kind, f"{type(exc).__name__}: {exc}",  # type: ignore[arg-type]
                            branch=loop.branch, traceback=failure.tb, cache_key=_hex(key))
        loop.records.append(record)
        _notify_quietly(loop, "on_step_end", record, None)
        raise failure from exc
    if before is not None and key is not None and loop.cache is not None:
        loop.digests.learn(out, fill(loop.cache, step, key, before, out))  # type: ignore[arg-type]
    record = StepRecord(step.name, step.path, "succeeded" if hit is None else "cached", start,
                        time.time(), loop.executor, loop.pid, kind,  # type: ignore[arg-type]
                        branch=loop.branch, cache_key=_hex(key),
                        restored=hit.objects if hit is not None else None)
    _record(loop, record, out)
    return out


def _consult(step: StageStep | AdapterStep, ctx: Any, loop: LoopState,
             ) -> tuple[Keyed | None, Hit | None]:
    """The step's cache key and hit: (None, None) for a step this run does not cache."""
    if loop.cache is None or not isinstance(step, StageStep):
        return None, None
    if step.path in loop.found:
        return loop.found[step.path]
    key = step_key(loop.cache, step, ctx, loop.digests)
    return key, (loop.cache.lookup(key) if key is not None else None)


def _run_fn(step: StageStep | AdapterStep, fn: Callable[[Any], Any], ctx: Any,
            snapshot: Snapshot | None, kind: str) -> Any:
    """Call the stage or adapter and check what it returned and wrote."""
    expected = step.adapter.target if isinstance(step, AdapterStep) else type(ctx)
    declared = step.entry if isinstance(step, StageStep) and step.entry.writes is not None \
        else None
    received = dict(ctx.__dict__) if declared is not None and snapshot is None else None
    out = call_declaring(step.entry, fn, ctx) if isinstance(step, StageStep) else fn(ctx)
    if not isinstance(out, expected):  # before any hook (a checkpoint) receives it
        raise TypeError(_wrong_return(kind, step.name, out, expected))
    if declared is not None:
        check_writes(declared, snapshot, received, out)
    return out


def _hex(key: Keyed | None) -> str | None:
    return key.key if key is not None else None


def _wrong_return(kind: str, name: str, out: Any, expected: type) -> str:
    what = "None" if out is None else (
        f"a {type(out).__name__} ({type(out).__module__}.{type(out).__qualname__})")
    hint = ("a stage returns the context it received, or a copy of it (set ctx.FIELD = ... "
            "and return ctx)") if kind == "stage" else "the context the next steps take"
    return f"{kind} {name!r} returned {what}, not a {expected.__name__}: {hint}"


def _record(loop: LoopState, record: StepRecord, ctx: Any) -> None:
    loop.records.append(record)
    notify(loop, "on_step_end", record, ctx, path=record.path, ctx=ctx)


# ---------------------------------------------------------------- branches


def execute_branch(task: BranchTask, cancel: CancelFlag, hooks: Sequence[RunHook] = (), *,
                   executor: str | None = None,
                   found: Mapping[str, tuple[Keyed, Hit]] | None = None) -> BranchOutcome:
    """Run one branch to completion in this process, on a fork of the task's context
    (nested groups run inline, see :func:`run_inline`).

    ``hooks`` are the driver's hooks when the branch runs in the driver's process; a
    task that carries branch hooks runs in a worker, and those hear the branch instead
    (their payloads come back in the outcome). ``executor`` names the executor in the
    step records (the run's by default). ``found``: the branch's cache hits, already
    looked up (a branch the driver completes from the cache, see :func:`run_group`).
    """
    remote = bool(task.hooks)
    if remote:
        hooks = [hook for _, hook in task.hooks]
    name = executor or task.run.executor
    loop = LoopState(run=task.run, cancel=cancel, branches=partial(run_inline, executor=name),
                     executor=name, hooks=hooks,
                     snapshots=task.snapshots, branch=task.branch.path, cache=task.cache,
                     found=found or {})
    outcome = BranchOutcome(task.branch.index, records=loop.records, pid=os.getpid())
    context = fork_context(task.context)
    try:
        notify(loop, "on_branch_start", task.branch, path=task.branch.path, ctx=context)
        outcome.context = run_steps(task.branch.steps, context, loop)
    except StepFailure as failure:
        outcome.failure = failure
    except Cancelled:
        outcome.cancelled = True
    if remote:
        _notify_quietly(loop, "on_branch_end", task.branch, outcome.context)
        for index, hook in task.hooks:
            try:
                outcome.payloads.append((index, hook.payload()))
            except Exception as exc:
                log.error("branch hook %s.payload failed: %s: %s", type(hook).__name__,
                          type(exc).__name__, exc)
    return outcome


def run_inline(group: GroupTask, *, executor: str) -> Iterator[BranchOutcome]:
    """The branches one after another in this process, in declaration order: how a
    group nested inside a branch runs, wherever that branch runs (``executor`` names
    the branch's executor in the step records)."""
    for task in group.tasks:
        if group.cancel.is_set():
            return
        yield execute_branch(task, group.cancel, group.hooks, executor=executor)


# ---------------------------------------------------------------- groups


def run_group(group: ParallelGroup, ctx: Any, loop: LoopState) -> Any:
    """Hand the branches to the loop's ``branches`` function, then merge. With the step
    cache, branches whose every step is a hit complete here first, from the cache: a
    fully cached group starts no worker."""
    notify(loop, "on_group_start", group, path=group.path, ctx=ctx)
    tasks = [BranchTask(b, ctx, loop.run, loop.snapshots, cache=loop.cache)
             for b in group.branches]
    cached = _cached_branches(group, ctx, loop)
    call = GroupTask([t for t in tasks if t.branch.index not in cached], loop.cancel,
                     loop.hooks, loop.warm.get(group.path, ()),
                     last=loop.branch is None and group.path == loop.last_group)
    done, failures = _collect(group, call, loop, cached=[
        partial(execute_branch, tasks[i], loop.cancel, loop.hooks, executor=loop.executor,
                found=found) for i, found in cached.items()])
    if failures:
        _notify_quietly(loop, "on_group_end", group, None)
        raise failures[0]
    if len(done) < len(group.branches):  # the run was interrupted: never merge a part
        _notify_quietly(loop, "on_group_end", group, None)
        raise Cancelled(group.path)
    merged = _merge(group, ctx, done, loop)
    notify(loop, "on_group_end", group, merged, path=group.path, ctx=merged)
    return merged


def _cached_branches(group: ParallelGroup, ctx: Any, loop: LoopState,
                     ) -> dict[int, Mapping[str, tuple[Keyed, Hit]]]:
    """The branches every step of which is a cache hit, with their hits (by index).

    Where branches run one after another anyway (inline, or a group nested in a branch)
    only a group cached whole completes here: a part completed first would change the
    order the branches finish in, which an ``append`` merge keeps."""
    if loop.cache is None:
        return {}
    out: dict[int, Mapping[str, tuple[Keyed, Hit]]] = {}
    for branch in group.branches:
        found = walk_cached(branch.steps, ctx, loop.cache)
        if found is not None:
            out[branch.index] = found
        elif loop.branch is not None or loop.executor == "inline":
            return {}
    return out


def _collect(group: ParallelGroup, call: GroupTask, loop: LoopState, *,
             cached: Sequence[Callable[[], BranchOutcome]] = (),
             ) -> tuple[list[tuple[Branch, Any]], list[StepFailure]]:
    """Run the branches (``cached``: those completed here, from the cache, first); what
    they returned, and how they failed."""
    done: list[tuple[Branch, Any]] = []
    failures: list[StepFailure] = []
    here = (run() for run in cached)
    outcomes = itertools.chain(here, loop.branches(call) if call.tasks else ())
    for outcome in outcomes:
        branch = group.branches[outcome.index]
        loop.records.extend(outcome.records)
        if outcome.failure is not None:
            failures.append(outcome.failure)
            loop.cancel.set()
        elif not outcome.cancelled:
            done.append((branch, outcome.context))
        if outcome.context is None or failures:
            _notify_quietly(loop, "on_branch_end", branch, outcome.context)
            continue
        try:
            notify(loop, "on_branch_end", branch, outcome.context, path=branch.path,
                   ctx=outcome.context)
        except StepFailure as failure:
            failures.append(failure)
            loop.cancel.set()
    return done, failures


def _merge(group: ParallelGroup, base: Any, done: list[tuple[Branch, Any]],
           loop: LoopState) -> Any:
    start = time.time()
    name = group.merge_adapter.name if group.merge_adapter else "merge"
    path = f"{group.path}:merge"
    try:
        if group.merge_adapter is not None:
            ordered = [c for _, c in sorted(done, key=lambda d: d[0].index)]
            merged = group.merge_adapter.fn(base, ordered)
            if merged is None:
                raise TypeError(f"merge adapter {name!r} returned None; it must return a context")
        else:
            values = [BranchValue(b.display, b.index, c) for b, c in done]
            merged = merge_contexts(base, values, group.rules, group=group.path)
    except Exception as exc:
        record = StepRecord(name, path, "failed", start, time.time(), loop.executor,
                            loop.pid, "merge", f"{type(exc).__name__}: {exc}", branch=loop.branch)
        loop.records.append(record)
        _notify_quietly(loop, "on_step_end", record, None)
        received = {"base": base, "branches": [c for _, c in done]}
        failure = _failure(name, path, "merge", exc, received,
                           code=group.merge_adapter.fn if group.merge_adapter else None)
        if isinstance(exc, ContextCollisionError):
            failure.original = exc
        raise failure from exc
    _record(loop, StepRecord(name, path, "succeeded", start, time.time(), loop.executor,
                             loop.pid, "merge", branch=loop.branch), merged)
    return merged
