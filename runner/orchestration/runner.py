"""The DAGRunner: runs a compiled plan, and on failure stops, keeps the evidence
and cleans up.

    runner = DAGRunner(plan, executor="threads")
    runner.trace_id            # known before anything runs
    result = runner.run()      # RunResult, or raises StageFailedError / ContextCollisionError

Stopping a run is one mechanism, whatever asks for it (a signal handler the front
door installs, see :mod:`runner.orchestration.signals`, or the application):
``runner.interrupt(signum)`` stops scheduling -- no new step or branch starts, those
in flight finish -- and ``run()`` raises :class:`RunInterruptedError` once the hooks
have recorded it; ``runner.abort()`` (from any thread) is for when that cannot wait.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from runner.errors import (
    ContextCollisionError,
    RunInterruptedError,
    RunnerError,
    StageFailedError,
    UsageError,
)
from runner.forensics import ForensicsWriter
from runner.orchestration.execute import LoopState, notify, run_steps
from runner.orchestration.executors import Executor, make_executor
from runner.orchestration.hooks import RunHook
from runner.orchestration.memo import StepMemo, look_ahead
from runner.orchestration.plan import Plan
from runner.orchestration.records import Resume, RunInfo, RunResult
from runner.orchestration.tasks import Cancelled, StepFailure
from runner.orchestration.warm import (
    branch_imports,
    group_width,
    imports_after_groups,
    stage_modules,
)
from runner.workspace import check_run_id, create_workspace, remove_workspace

__all__ = ["DAGRunner", "new_run_id", "parse_traceparent", "stage_modules"]

log = logging.getLogger("runner")


_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


def parse_traceparent(value: str) -> tuple[str, str] | None:
    """``(trace_id, parent_span_id)`` of a W3C ``traceparent`` header, or None if invalid."""
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, _, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} \
            or set(span_id) == {"0"}:
        return None
    return trace_id, span_id


def new_run_id() -> str:
    """A sortable, unique id usable as a folder and a Kubernetes name."""
    return f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class DAGRunner:
    """Executes one plan: steps in sequence, parallel groups on an executor.

    A failure's evidence goes to ``forensics`` (a :class:`ForensicsWriter`; the front
    door passes the artifact store's); without one the engine writes nothing to disk.
    ``cache``: the step cache (:mod:`runner.orchestration.memo`) the front door hands
    the run; its stage steps are looked up before they run and kept after.
    """

    def __init__(
        self,
        plan: Plan,
        *,
        executor: str | Executor | None = None,
        run_id: str | None = None,
        hooks: Sequence[RunHook] = (),
        forensics: ForensicsWriter | None = None,
        workspace_root: str | os.PathLike[str] | None = None,
        cleanup: Callable[[str], object] | None = None,
        snapshots: bool = True,
        max_workers: int | None = None,
        resume: Resume | None = None,
        traceparent: str | None = None,
        cache: StepMemo | None = None,
    ) -> None:
        self.plan = plan
        self.executor = make_executor(executor, max_workers=max_workers,
                                      preload=[*stage_modules(plan), *branch_imports(plan)],
                                      width=group_width(plan))
        self.run_id = check_run_id(run_id) if run_id else new_run_id()
        self.trace_id, self.parent_span_id = self._trace(traceparent)
        self.hooks = tuple(hooks)
        self.forensics = forensics
        self.workspace_root = workspace_root
        self.cleanup = cleanup or (lambda rid: remove_workspace(rid, workspace_root))
        self.snapshots = snapshots
        self.resume = resume
        self.cache = cache
        self.info = RunInfo(self.run_id, self.trace_id, plan.pipeline, self.executor.name,
                            self.parent_span_id)
        self._state = threading.Lock()
        self._signum: int | None = None
        self._loop: LoopState | None = None
        self._ended = False
        self._aborted: RunInterruptedError | None = None

    @staticmethod
    def _trace(traceparent: str | None) -> tuple[str, str | None]:
        """The run's trace: the one ``traceparent`` (or env ``TRACEPARENT``) names, under
        its span, or a new one. An invalid environment value is ignored, as W3C says."""
        if traceparent is not None:
            parsed = parse_traceparent(traceparent)
            if parsed is None:
                raise UsageError(f"traceparent {traceparent!r} is not a W3C traceparent "
                                 "(00-<32 hex trace id>-<16 hex span id>-<2 hex flags>)")
            return parsed
        inherited = os.environ.get("TRACEPARENT")
        if inherited:
            parsed = parse_traceparent(inherited)
            if parsed is not None:
                return parsed
            log.warning("ignoring TRACEPARENT=%r: not a W3C traceparent; starting a new trace",
                        inherited)
        return secrets.token_hex(16), None

    def root_context(self, context: Any = None) -> Any:
        """The context the first stage receives: the given one or a new root."""
        if context is None:
            try:
                context = self.plan.context_type()
            except Exception as exc:
                raise UsageError(
                    f"pipeline {self.plan.pipeline!r}: cannot create a default "
                    f"{self.plan.context_type.__name__} ({exc}); pass a context to run()"
                ) from exc
        elif not isinstance(context, self.plan.context_type):
            raise UsageError(
                f"pipeline {self.plan.pipeline!r} takes a {self.plan.context_type.__name__}, "
                f"got a {type(context).__name__}"
            )
        if isinstance(context, BaseModel):
            fields = type(context).model_fields
            if "run_id" in fields:
                context.__dict__["run_id"] = self.run_id
            if "workspace" in fields:
                path = create_workspace(self.run_id, self.workspace_root)
                context.__dict__["workspace"] = str(path)
        return context

    # ------------------------------------------------------------ stopping

    @property
    def interrupted(self) -> bool:
        """True once :meth:`interrupt` was called."""
        return self._signum is not None

    def interrupt(self, signum: int = signal.SIGTERM) -> None:
        """Stop scheduling, from any thread (not from a signal handler itself: it takes
        locks): no new step or branch starts; the steps in flight finish, then
        :meth:`run` records the interruption and raises :class:`RunInterruptedError`
        (exit code 128 + ``signum``). Later calls do nothing; before :meth:`run`, the
        run stops before its first step."""
        with self._state:
            if self._signum is not None:
                return
            self._signum = int(signum)
            loop = self._loop
        log.info("run %s interrupted (%s): no new step starts, the steps in flight "
                 "finish", self.run_id, _signal_name(signum))
        if loop is not None:
            loop.cancel.set()

    def abort(self) -> RunInterruptedError | None:
        """Stop now, from any thread, because the process is about to exit: every
        hook hears ``on_run_abort`` (run.json records ``interrupted`` with what is
        committed, the lock is released), the executor drops queued branches and
        kills its workers, and the workspace is removed. Returns the error recorded,
        or None when the run had already ended."""
        self.interrupt(self._signum or signal.SIGTERM)
        with self._state:
            if self._ended:
                return None
            if self._aborted is not None:
                return self._aborted
            error = self._aborted = self._interruption(forced=True)
        for hook in self.hooks:  # first: the record and the lock matter most
            try:
                hook.on_run_abort(self.info, error)
            except Exception as exc:
                log.error("hook %s.on_run_abort failed: %s: %s", type(hook).__name__,
                          type(exc).__name__, exc)
        try:
            self.executor.abort()
        except Exception as exc:
            log.error("run %s: stopping the %s executor failed: %s: %s", self.run_id,
                      self.executor.name, type(exc).__name__, exc)
        self._cleanup()
        return error

    def _interruption(self, *, forced: bool) -> RunInterruptedError:
        """The error that says what this run completed before it was stopped."""
        signum = self._signum or signal.SIGTERM
        loop = self._loop
        done = set(self.resume.completed if self.resume else ())
        for record in list(loop.records) if loop is not None else []:
            if record.branch is None and record.done:
                done.add(record.path.removesuffix(":merge"))
        main = [step.path for step in self.plan.main_line()]
        return RunInterruptedError(
            run_id=self.run_id, signal_name=_signal_name(signum), signum=signum,
            completed=[p for p in main if p in done], total=len(main), forced=forced,
            records=loop.records if loop is not None else (),
        )

    # ------------------------------------------------------------ running

    def run(self, context: Any = None) -> RunResult:
        """Run the plan; raise :class:`StageFailedError`, :class:`ContextCollisionError`
        or, once :meth:`interrupt` was called, :class:`RunInterruptedError`.

        Hooks always hear ``on_run_end``, whatever happened after ``on_run_start``.
        A KeyboardInterrupt (Ctrl-C without a handler of ours) is recorded as an
        interruption, then re-raised with a note saying so.
        A resumed run that had already succeeded runs nothing and calls no hook. Once
        :meth:`abort` was called, whatever its tearing down makes fail raises what it recorded.
        """
        if self.resume is not None and self.resume.finished:
            now = time.time()
            return RunResult(self.run_id, self.trace_id, self.plan.pipeline,
                             self.resume.context, (), now, now, self.executor.name,
                             already_complete=True)
        loop = self._new_loop()
        with self._state:
            self._loop = loop
            if self._signum is not None:
                loop.cancel.set()
        start = time.time()
        try:
            ctx = self._first(loop, self.resume.context if self.resume else context)
            notify(loop, "on_run_start", self.plan, ctx, path=self.plan.pipeline, ctx=ctx)
            if self.plan.has_parallel and self.cache is None:  # cached: at the first dispatch
                self.executor.start()
            try:
                ctx = run_steps(self.plan.steps, ctx, loop)
            except (StepFailure, Cancelled):
                self.executor.shutdown()
                raise
            except BaseException:
                self.executor.abort()  # KeyboardInterrupt, SystemExit: never wait on workers
                raise
            self.executor.shutdown()
            if self._aborted is not None:  # recorded as interrupted already: not a success
                raise Cancelled(self.plan.pipeline)
        except StepFailure as failure:
            # its worker was stopped, or abort() removed its workspace: interrupted
            if self._aborted is not None or (self.interrupted and failure.kind == "branch"):
                raise self._stopped() from None
            error = self._fail(failure, loop)
            self._end(None, error)
            raise error from (None if error is failure.original else failure.original)
        except Cancelled:
            raise self._stopped() from None
        except KeyboardInterrupt as exc:  # Ctrl-C where no handler of ours stops the run
            exc.add_note(f"{self._keyboard_interrupt()}; recorded as interrupted")
            raise
        except BaseException as exc:
            if self._aborted is not None:  # abort() tore the run down under it (a pool
                raise self._stopped() from exc  # shut, say): what it recorded is the error
            self._cleanup()
            self._end(None, exc)
            raise
        self._cleanup()
        result = RunResult(self.run_id, self.trace_id, self.plan.pipeline, ctx,
                           tuple(loop.records), start, time.time(), self.executor.name)
        self._end(result, None)
        return result

    def _new_loop(self) -> LoopState:
        """What the run's steps share: its hooks, executor, cache, cancel flag, records."""
        return LoopState(run=self.info, cancel=self.executor.new_cancel_flag(),
                         branches=self.executor.run_branches, executor=self.executor.name,
                         hooks=self.hooks, snapshots=self.snapshots, cache=self.cache,
                         completed=self.resume.completed if self.resume else frozenset(),
                         warm=imports_after_groups(self.plan), last_group=self.plan.last_group)

    def _first(self, loop: LoopState, context: Any) -> Any:
        """The context the first step receives, the outputs of the hits the run starts
        with already being read (:func:`~runner.orchestration.memo.look_ahead`)."""
        ctx = self.root_context(context)
        if loop.cache is not None:
            look_ahead(loop.cache, self.plan.steps, ctx, loop.digests, skip=loop.completed)
        return ctx

    def _stopped(self) -> RunInterruptedError:
        """The run stopped at a step boundary after :meth:`interrupt`, or was torn down by
        :meth:`abort`: hooks hear the interruption (the one abort recorded), returned."""
        error = self._aborted or self._interruption(forced=False)
        self._cleanup()
        self._end(None, error)
        return error

    def _keyboard_interrupt(self) -> RunInterruptedError:
        """Ctrl-C reached the run as KeyboardInterrupt (a script or notebook without
        ``handle_signals``): an interruption, not a failure. Hooks hear it as one (run.json,
        spans and logs say ``interrupted``); the caller still gets the KeyboardInterrupt."""
        with self._state:
            if self._signum is None:
                self._signum = int(signal.SIGINT)
            loop = self._loop
        if loop is not None:
            loop.cancel.set()  # branch threads still running stop at their next step
        error = self._aborted or self._interruption(forced=True)
        self._cleanup()
        self._end(None, error)
        return error

    def _end(self, result: RunResult | None, error: BaseException | None) -> None:
        for hook in self.hooks:
            try:
                hook.on_run_end(self.info, result, error)
            except Exception as exc:
                log.error("hook %s.on_run_end failed: %s: %s", type(hook).__name__,
                          type(exc).__name__, exc)
        with self._state:
            self._ended = True

    def _fail(self, failure: StepFailure, loop: LoopState) -> RunnerError:
        """The run's error for a failed step: the store's own error when the store failed
        it (a step-cache entry that does not verify: no forensics, nothing of the stage's
        to show), else the stage's or the merge's, its forensics written."""
        if failure.store and isinstance(failure.original, RunnerError):
            self._cleanup()
            return failure.original
        info = {
            "run_id": self.run_id,
            "trace_id": self.trace_id,
            "pipeline": self.plan.pipeline,
            "stage": failure.name,
            "path": failure.path,
            "kind": failure.kind,
            "exception_type": failure.exc_type,
            "message": failure.message,
            "traceback": failure.tb,
            "where": failure.where,
            "user_traceback": failure.user_tb,
            "pid": failure.pid,
            "time": datetime.now(UTC).isoformat(),
        }
        location: str | None = None
        try:
            if self.forensics is not None:
                location = self.forensics.write(self.run_id, failure.received, info)
        except Exception as exc:
            log.error("could not write forensics for run %s: %s", self.run_id, exc)
        self._cleanup()
        original = failure.original
        if isinstance(original, ContextCollisionError):
            return ContextCollisionError(original.collisions, group=original.group,
                                         run_id=self.run_id, error_context=location,
                                         records=loop.records)
        return StageFailedError(
            run_id=self.run_id, stage=failure.name, path=failure.path,
            exc_type=failure.exc_type, message=failure.message, traceback=failure.tb,
            error_context=location, cause=original, records=loop.records,
            where=failure.where, user_traceback=failure.user_tb,
        )

    def _cleanup(self) -> None:
        """Remove the scratch workspace; a failing cleanup never hides the run's outcome."""
        try:
            self.cleanup(self.run_id)
        except Exception as exc:
            log.error("cleanup of run %s's workspace failed: %s: %s",
                      self.run_id, type(exc).__name__, exc)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
