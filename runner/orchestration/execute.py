"""The step loop, shared by the driver and every worker process.

``run_steps`` executes a sequence of plan steps; a parallel group forks the
context, hands its branches to an executor, and merges what they return.
Everything a worker needs travels in a picklable :class:`BranchTask`.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from runner.context import Snapshot, fork_context
from runner.errors import ContextCollisionError
from runner.merge import BranchValue, merge_contexts
from runner.orchestration.contracts import check_writes
from runner.orchestration.hooks import RunHook
from runner.orchestration.plan import (
    AdapterStep,
    Branch,
    ParallelGroup,
    PipelineStep,
    StageStep,
    Step,
)
from runner.orchestration.records import RunInfo, StepRecord
from runner.orchestration.warm import warm_in_background
from runner.tracebacks import user_trace

if TYPE_CHECKING:
    from runner.orchestration.executors.base import Executor

__all__ = ["BranchOutcome", "BranchTask", "Cancelled", "Env", "StepFailure", "execute_branch",
           "run_steps", "worker_failure"]


log = logging.getLogger("runner")


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...
    def set(self) -> None: ...


class Cancelled(Exception):
    """A step was not started because the run is failing elsewhere or was interrupted."""


class StepFailure(Exception):
    """A step raised (or a merge collided); carries what forensics need. Picklable."""

    def __init__(
        self,
        *,
        name: str,
        path: str,
        kind: str,
        exc_type: str,
        message: str,
        tb: str,
        received: Any,
        original: BaseException | None,
        pid: int,
        where: str = "",
        user_tb: str = "",
    ) -> None:
        super().__init__(f"{name} at {path}: {exc_type}: {message}")
        self.name, self.path, self.kind = name, path, kind
        self.exc_type, self.message, self.tb = exc_type, message, tb
        self.received, self.original, self.pid = received, original, pid
        self.where, self.user_tb = where, user_tb
        """The user's last frame and short traceback, made where the stage raised (the
        driver of a Ray run may not have the worker's files): see runner.tracebacks."""

    def __reduce__(self) -> tuple[Any, ...]:
        original = self.original
        try:
            pickle.dumps(original)
        except Exception:
            original = None
        state = {"name": self.name, "path": self.path, "kind": self.kind,
                 "exc_type": self.exc_type, "message": self.message, "tb": self.tb,
                 "received": self.received, "original": original, "pid": self.pid,
                 "where": self.where, "user_tb": self.user_tb}
        return (_rebuild_failure, (state,))


def _rebuild_failure(state: dict[str, Any]) -> StepFailure:
    return StepFailure(**state)


def _failure(name: str, path: str, kind: str, exc: BaseException, received: Any,
             code: Callable[..., Any] | None = None) -> StepFailure:
    """What a failed step leaves: the error, the full traceback and the user's side of
    it (``code`` is the stage or adapter function that ran, when one did)."""
    trace = user_trace(exc, code=code)
    return StepFailure(
        name=name, path=path, kind=kind, exc_type=type(exc).__name__, message=str(exc),
        tb="".join(traceback.format_exception(exc)), received=received, original=exc,
        pid=os.getpid(), where=trace.where, user_tb=trace.text if trace.frames else "",
    )


@dataclass
class Env:
    """What the step loop needs in one process."""

    run: RunInfo
    cancel: CancelFlag
    executor: Executor
    hooks: Sequence[RunHook] = ()
    snapshots: bool = True
    records: list[StepRecord] = field(default_factory=list)
    pid: int = field(default_factory=os.getpid)
    branch: str | None = None
    """The branch this loop runs (None on the driver's main line of steps)."""
    completed: frozenset[str] = frozenset()
    """Main-line step paths a resumed run has already done: skipped, not run again."""
    warm: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Per parallel group path: modules the driver imports while the group runs on
    workers (what the steps after it import, see :mod:`runner.orchestration.warm`)."""


def notify(env: Env, method: str, *args: Any, path: str, ctx: Any) -> None:
    """Call one hook method on every hook; a hook that raises fails the run at ``path``
    (a checkpoint that cannot be written must not pass silently)."""
    for hook in env.hooks:
        try:
            getattr(hook, method)(env.run, *args)
        except Exception as exc:
            name = f"{type(hook).__name__}.{method}"
            raise _failure(name, path, "hook", exc, ctx) from exc


def _notify_quietly(env: Env, method: str, *args: Any) -> None:
    """Hooks called while a failure is already on its way: their errors are logged."""
    for hook in env.hooks:
        _notify_one(env, hook, method, *args)


def _notify_one(env: Env, hook: RunHook, method: str, *args: Any) -> None:
    try:
        getattr(hook, method)(env.run, *args)
    except Exception as exc:
        log.error("hook %s.%s failed: %s: %s", type(hook).__name__, method,
                  type(exc).__name__, exc)


def _branch_hooks(env: Env, branch: Branch) -> tuple[tuple[int, RunHook], ...]:
    out = []
    for index, hook in enumerate(env.hooks):
        try:
            made = hook.branch_hook(env.run, branch)
        except Exception as exc:
            log.error("hook %s.branch_hook failed: %s: %s", type(hook).__name__,
                      type(exc).__name__, exc)
            continue
        if made is not None:
            out.append((index, made))
    return tuple(out)


def run_steps(steps: Sequence[Step], ctx: Any, env: Env) -> Any:
    """Run steps in order: the output of step N is the input of step N+1."""
    for step in steps:
        if env.cancel.is_set():
            raise Cancelled(step.path)
        if step.path in env.completed:
            continue
        if isinstance(step, StageStep):
            ctx = _call(step, step.entry.fn, ctx, env, "stage")
        elif isinstance(step, AdapterStep):
            ctx = _call(step, step.adapter.fn, ctx, env, "adapter")
        elif isinstance(step, PipelineStep):
            ctx = _run_pipeline(step, ctx, env)
        else:
            ctx = run_group(step, ctx, env)
    return ctx


def _run_pipeline(step: PipelineStep, ctx: Any, env: Env) -> Any:
    notify(env, "on_pipeline_start", step, path=step.path, ctx=ctx)
    try:
        out = run_steps(step.steps, ctx, env)
    except BaseException:
        _notify_quietly(env, "on_pipeline_end", step, None)
        raise
    notify(env, "on_pipeline_end", step, out, path=step.path, ctx=out)
    return out


def _call(step: StageStep | AdapterStep, fn: Callable[[Any], Any], ctx: Any, env: Env,
          kind: str) -> Any:
    snapshot = Snapshot(ctx) if env.snapshots else None
    notify(env, "on_step_start", step, path=step.path, ctx=ctx)
    start = time.time()
    expected = step.adapter.target if isinstance(step, AdapterStep) else type(ctx)
    declared = step.entry if isinstance(step, StageStep) and step.entry.writes is not None \
        else None
    received = dict(ctx.__dict__) if declared is not None and snapshot is None else None
    try:
        out = fn(ctx)
        if not isinstance(out, expected):  # before any hook (a checkpoint) receives it
            raise TypeError(_wrong_return(kind, step.name, out, expected))
        if declared is not None:
            check_writes(declared, snapshot, received, out)
    except Exception as exc:
        end = time.time()
        received = snapshot.restore() if snapshot is not None else ctx
        failure = _failure(step.name, step.path, kind, exc, received, code=fn)
        record = StepRecord(step.name, step.path, "failed", start, end, env.executor.name,
                            env.pid, kind, f"{type(exc).__name__}: {exc}",  # type: ignore[arg-type]
                            branch=env.branch, traceback=failure.tb)
        env.records.append(record)
        _notify_quietly(env, "on_step_end", record, None)
        raise failure from exc
    record = StepRecord(step.name, step.path, "succeeded", start, time.time(),
                        env.executor.name, env.pid, kind, branch=env.branch)  # type: ignore[arg-type]
    _record(env, record, out)
    return out


def _wrong_return(kind: str, name: str, out: Any, expected: type) -> str:
    what = "None" if out is None else (
        f"a {type(out).__name__} ({type(out).__module__}.{type(out).__qualname__})")
    hint = ("a stage returns the context it received, or a copy of it (set ctx.FIELD = ... "
            "and return ctx)") if kind == "stage" else "the context the next steps take"
    return f"{kind} {name!r} returned {what}, not a {expected.__name__}: {hint}"


def _record(env: Env, record: StepRecord, ctx: Any) -> None:
    env.records.append(record)
    notify(env, "on_step_end", record, ctx, path=record.path, ctx=ctx)


# ---------------------------------------------------------------- groups


@dataclass
class BranchTask:
    """A branch bound to its input: everything a worker needs, picklable."""

    branch: Branch
    context: Any
    run: RunInfo
    snapshots: bool = True
    hooks: tuple[tuple[int, RunHook], ...] = ()
    """Branch hooks for a worker process, each with the index of the driver hook
    that made it (see :meth:`RunHook.branch_hook`)."""


@dataclass
class BranchOutcome:
    """What a branch returned: its context, or the failure, and its step records."""

    index: int
    context: Any = None
    failure: StepFailure | None = None
    cancelled: bool = False
    records: list[StepRecord] = field(default_factory=list)
    pid: int = 0
    node: str | None = None
    payloads: list[tuple[int, Any]] = field(default_factory=list)
    """What each branch hook sent back, with its driver hook's index."""


def execute_branch(
    task: BranchTask, cancel: CancelFlag, hooks: Sequence[RunHook] = (),
    executor_name: str | None = None,
) -> BranchOutcome:
    """Run one branch to completion in this process (nested groups run inline).

    ``hooks`` are the driver's live hooks (same process); a task that carries
    branch hooks runs in a worker, and those hear the branch instead.
    """
    from runner.orchestration.executors.inline import InlineExecutor

    remote = bool(task.hooks)
    if remote:
        hooks = [hook for _, hook in task.hooks]
    inline = InlineExecutor(label=executor_name or task.run.executor)
    env = Env(task.run, cancel, inline, hooks, task.snapshots, branch=task.branch.path)
    outcome = BranchOutcome(task.branch.index, records=env.records, pid=os.getpid())
    try:
        notify(env, "on_branch_start", task.branch, path=task.branch.path, ctx=task.context)
        outcome.context = run_steps(task.branch.steps, task.context, env)
    except StepFailure as failure:
        outcome.failure = failure
    except Cancelled:
        outcome.cancelled = True
    if remote:
        _notify_quietly(env, "on_branch_end", task.branch, outcome.context)
        for index, hook in task.hooks:
            try:
                outcome.payloads.append((index, hook.payload()))
            except Exception as exc:
                log.error("branch hook %s.payload failed: %s: %s", type(hook).__name__,
                          type(exc).__name__, exc)
    return outcome


def worker_failure(task: BranchTask, exc: BaseException) -> BranchOutcome:
    """A branch whose worker could not run it at all (died, or could not unpickle it)."""
    if type(exc).__name__ == "BrokenProcessPool":
        message = ("a worker process died (killed, out of memory or crashed) while this "
                   f"group ran; every branch of it stopped: {exc}")
    else:
        message = f"the worker running this branch failed: {type(exc).__name__}: {exc}"
    failure = StepFailure(
        name=task.branch.label, path=task.branch.path, kind="branch",
        exc_type=type(exc).__name__, message=message,
        tb="".join(traceback.format_exception(exc)), received=task.context, original=None,
        pid=0,
    )
    return BranchOutcome(task.branch.index, failure=failure)


def run_group(group: ParallelGroup, ctx: Any, env: Env) -> Any:
    """Fork, run the branches on the env's executor, merge."""
    notify(env, "on_group_start", group, path=group.path, ctx=ctx)
    executor = env.executor
    tasks = [
        BranchTask(b, ctx if executor.isolates else fork_context(ctx), env.run, env.snapshots,
                   () if executor.live_hooks else _branch_hooks(env, b))
        for b in group.branches
    ]
    if not executor.live_hooks:  # the driver hears no branch start: say they were sent
        for branch in group.branches:
            _notify_quietly(env, "on_branch_queued", branch)
    warming = warm_in_background(env.warm.get(group.path, ())) if executor.isolates else None
    try:
        done, failures = _collect(group, tasks, env)
    finally:
        if warming is not None:  # the merge and the next steps may import the same modules
            warming.join()
    if failures:
        _notify_quietly(env, "on_group_end", group, None)
        raise failures[0]
    if len(done) < len(group.branches):  # the run was interrupted: never merge a part
        _notify_quietly(env, "on_group_end", group, None)
        raise Cancelled(group.path)
    merged = _merge(group, ctx, done, env)
    notify(env, "on_group_end", group, merged, path=group.path, ctx=merged)
    return merged


def _collect(group: ParallelGroup, tasks: list[BranchTask], env: Env,
             ) -> tuple[list[tuple[Branch, Any]], list[StepFailure]]:
    """Run the branches on the env's executor; what they returned, and how they failed."""
    done: list[tuple[Branch, Any]] = []
    failures: list[StepFailure] = []
    executor = env.executor
    for outcome in executor.run_branches(tasks, env.cancel, env.hooks):
        branch = group.branches[outcome.index]
        for index, payload in outcome.payloads:
            _notify_one(env, env.hooks[index], "on_branch_payload", branch, payload)
        env.records.extend(outcome.records)
        if not executor.live_hooks:
            for record in outcome.records:
                _notify_quietly(env, "on_step_end", record, None)
        if outcome.failure is not None:
            failures.append(outcome.failure)
            env.cancel.set()
        elif not outcome.cancelled:
            done.append((branch, outcome.context))
        if outcome.context is None or failures:
            _notify_quietly(env, "on_branch_end", branch, outcome.context)
        else:
            try:
                notify(env, "on_branch_end", branch, outcome.context, path=branch.path,
                       ctx=outcome.context)
            except StepFailure as failure:
                failures.append(failure)
                env.cancel.set()
    return done, failures


def _merge(group: ParallelGroup, base: Any, done: list[tuple[Branch, Any]], env: Env) -> Any:
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
        record = StepRecord(name, path, "failed", start, time.time(), env.executor.name,
                            env.pid, "merge", f"{type(exc).__name__}: {exc}", branch=env.branch)
        env.records.append(record)
        _notify_quietly(env, "on_step_end", record, None)
        received = {"base": base, "branches": [c for _, c in done]}
        failure = _failure(name, path, "merge", exc, received,
                           code=group.merge_adapter.fn if group.merge_adapter else None)
        if isinstance(exc, ContextCollisionError):
            failure.original = exc
        raise failure from exc
    _record(env, StepRecord(name, path, "succeeded", start, time.time(), env.executor.name,
                            env.pid, "merge", branch=env.branch), merged)
    return merged
