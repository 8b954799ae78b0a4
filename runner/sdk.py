"""QuantSDK: the Python front door, as the seed design names it.

    sdk = QuantSDK()                                # configs/manifest.json
    result = sdk.run_pipeline("alpha.full")         # RunResult
    sdk.cleanup_workspace(result.run_id)            # scratch only, never artifacts
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.artifacts import (
    ArtifactStore,
    CheckpointHook,
    RunLease,
    RunPaths,
    StoreForensics,
    prepare_resume,
    read_run,
)
from runner.artifacts.attempts import set_aside
from runner.artifacts.documents import CheckpointRef, RunDoc
from runner.artifacts.layout import RUNS, is_run_id
from runner.artifacts.origin import prepare_origin, start_partial
from runner.artifacts.results import ResultsHook
from runner.errors import RunInterruptedError, UsageError
from runner.manifest import DEFAULT_MANIFEST, Manifest, default_manifest, load_manifest
from runner.orchestration.contracts import check_reads
from runner.orchestration.executors import EXECUTORS, Executor, check_executor
from runner.orchestration.hooks import RunHook
from runner.orchestration.plan import Plan, compile_plan
from runner.orchestration.plan.slicing import PartialRun, partial_run
from runner.orchestration.records import Resume, RunResult
from runner.orchestration.runner import DAGRunner, new_run_id
from runner.orchestration.signals import StopOnSignals, term_grace
from runner.registry import StageRegistry, add_module_folders
from runner.sdk_hooks import ReleaseLock, SpansWriter
from runner.telemetry import Tracing, TracingHook, current_traceparent
from runner.telemetry import get_tracing as _get_tracing
from runner.telemetry.logs import LogHook
from runner.words import did_you_mean
from runner.workspace import check_run_id, remove_workspace, workspace_path

if TYPE_CHECKING:
    from runner.cache.step_cache import StepCache

__all__ = ["DEFAULT_MANIFEST", "QuantSDK"]

log = logging.getLogger("runner")


class QuantSDK:
    """Loads pipeline definitions from the manifest and runs them."""

    def __init__(
        self,
        manifest: str | os.PathLike[str] | Manifest | None = None,
        *,
        registry: StageRegistry | None = None,
        artifacts: str | os.PathLike[str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        workspace_root: str | os.PathLike[str] | None = None,
        path: Sequence[str | os.PathLike[str]] = (),
        allow_unsigned: bool = False,
    ) -> None:
        self._manifest_arg = manifest if manifest is not None else default_manifest()
        self.registry = registry
        self.artifacts = str(artifacts or os.environ.get("RUNNER_ARTIFACTS", "data/artifacts"))
        self.storage_options = dict(storage_options or {})
        self.workspace_root = workspace_root
        self.path = tuple(str(p) for p in path)
        """Folders where the manifest's ``module:attr`` paths are also looked up (after
        the normal import path and the manifest's own folder)."""
        self.allow_unsigned = allow_unsigned
        """Read store content that does not verify with the artifact key (warning)."""
        self._plans: dict[str, Plan] = {}

    @cached_property
    def manifest(self) -> Manifest:
        if isinstance(self._manifest_arg, Manifest):
            return self._manifest_arg
        add_module_folders(self.path)  # after the manifest's folder, added when compiling
        return load_manifest(self._manifest_arg)

    def plan(self, pipeline: str) -> Plan:
        """Compile ``pipeline`` from the manifest (once: plans are immutable)."""
        if pipeline not in self._plans:
            self._plans[pipeline] = compile_plan(self.manifest, pipeline, registry=self.registry)
        return self._plans[pipeline]

    def store(self) -> ArtifactStore:
        """The artifact store at this SDK's root (not checked for access)."""
        return ArtifactStore(self.artifacts, self.storage_options)

    def runner(
        self,
        pipeline: str,
        *,
        executor: str | Executor | None = None, run_id: str | None = None,
        hooks: Sequence[RunHook] = (), resume: bool = False, start_if_new: bool = False,
        force: bool = False, checkpoints: bool = True, tracing: bool | Tracing = True,
        cache: bool | None = None,
        from_step: str | None = None, origin: str | None = None, to_step: str | None = None,
        **options: Any,
    ) -> DAGRunner:
        """A DAGRunner for ``pipeline``, wired to this SDK's store, lock, cleanup and tracing.

        The store is checked before anything runs (:class:`ArtifactError`, exit 2,
        when it cannot be written); ``resume`` continues ``run_id`` after its last
        completed step, on the executor the run started with unless ``executor`` is
        given, and refuses a run id the store does not know (:class:`UsageError`)
        unless ``start_if_new`` (what a Kubernetes Job's first pod does). The
        executor is checked (Ray installed?) before the run id is taken.
        ``tracing`` follows the standard OpenTelemetry environment (spans always
        land in ``runs/<RUN_ID>/spans.jsonl`` unless OTEL_SDK_DISABLED); a run
        started inside an active span of the application joins its trace.
        ``cache``: the step cache, True, False or None (see :meth:`step_cache`).
        ``from_step``, ``origin``, ``to_step``: a partial run (:mod:`.plan.slicing`).
        """
        partial = partial_run(self.plan(pipeline), from_step=from_step, origin=origin,
                              to_step=to_step)
        plan = partial.plan if partial is not None else self.plan(pipeline)
        run_id = check_run_id(run_id) if run_id else new_run_id()
        if resume and not checkpoints:
            raise UsageError("--resume needs checkpoints")
        store = self.store()
        previous: RunDoc | None = None
        if resume:
            previous = _resumable(store, run_id, start_if_new=start_if_new,
                                  allow_unsigned=self.allow_unsigned)
            if executor is None and previous is not None and previous.executor \
                    and previous.status != "succeeded":  # succeeded: nothing runs again
                executor = _recorded_executor(previous)
        check_executor(executor)  # before the run id is taken: nothing left behind
        if checkpoints:  # without them the store only ever receives forensics
            store.check()
        if not resume:
            self._refuse_existing(store, run_id)  # before waiting on a lease for nothing
        prepared = self._origin(store, partial, force=force) if previous is None else None
        options["cache"] = self.step_cache(pipeline, cache=cache, store=store)
        lease: RunLease | None = None
        if checkpoints:  # without checkpoints the run leaves nothing to guard but forensics
            lease = RunLease(store, run_id)
            lease.acquire()
        try:
            return self._wired(plan, store, lease, run_id=run_id, executor=executor,
                               hooks=hooks, resume=resume, force=force, partial=partial,
                               checkpoints=checkpoints, tracing=tracing, options=options,
                               prepared=prepared)
        except BaseException:
            if lease is not None:
                lease.release()
            raise

    def step_cache(self, pipeline: str, *, cache: bool | None = None,
                   store: ArtifactStore | None = None) -> StepCache | None:
        """The step cache of a run of ``pipeline``, or None (True: every stage, False: none,
        None: as the pipeline and stages ask; see :func:`runner.cache.step_cache.cache_for`)."""
        from runner import __version__
        from runner.cache.step_cache import cache_for

        return cache_for(self.plan(pipeline), lambda: store or self.store(), cache=cache,
                         runner_version=__version__, allow_unsigned=self.allow_unsigned)

    def _origin(self, store: ArtifactStore, partial: PartialRun | None, *, force: bool,
                ) -> tuple[Resume, CheckpointRef] | None:
        """A new run's ``--origin``, checked before the run id is taken: a refused origin
        leaves nothing behind (None: not a ``--from`` run)."""
        if partial is None or partial.origin is None:
            return None
        return prepare_origin(store, partial, self.plan(partial.plan.pipeline), force=force,
                              allow_unsigned=self.allow_unsigned)

    @staticmethod
    def _refuse_existing(store: ArtifactStore, run_id: str) -> None:
        if store.exists(RunPaths(run_id).run_file):
            raise UsageError(f"run {run_id!r} already exists in {store.url}; use --resume to "
                             "continue it, or another --run-id")

    def _wired(self, plan: Plan, store: ArtifactStore, lease: RunLease | None, *, run_id: str,
               executor: str | Executor | None, hooks: Sequence[RunHook], resume: bool,
               force: bool, checkpoints: bool, tracing: bool | Tracing,
               options: dict[str, Any], partial: PartialRun | None = None,
               prepared: tuple[Resume, CheckpointRef] | None = None) -> DAGRunner:
        """The DAGRunner, once the run id is ours: its state is read under the lease,
        and everything the run writes goes through a store fenced by the lease."""
        state: Resume | None = None
        previous: RunDoc | None = None
        read: tuple[float, float] | None = None
        if resume:
            started = time.time()
            state, previous = prepare_resume(store, run_id, plan, force=force,
                                             allow_unsigned=self.allow_unsigned)
            read = (started, time.time())
            if state is not None and state.finished:  # nothing runs, nothing to guard
                if lease is not None:
                    lease.release()
                return DAGRunner(plan, executor=executor, run_id=run_id, hooks=hooks,
                                 workspace_root=self.workspace_root, resume=state, **options)
        else:
            self._refuse_existing(store, run_id)  # another process may have run it meanwhile
        state, completed, record = start_partial(
            store, partial, self.plan(plan.pipeline), state=state, previous=previous,
            force=force, allow_unsigned=self.allow_unsigned, prepared=prepared)
        writes = store.fenced(lease.check) if lease is not None else store
        attempt = previous.attempts + 1 if previous is not None else 1
        # a previous attempt's spans and forensics stay, as that attempt's
        follows = set_aside(writes, run_id, previous.attempts) if previous is not None else None
        extra: list[RunHook] = []
        checkpoint: CheckpointHook | None = None
        if checkpoints:
            checkpoint = CheckpointHook(writes, plan, plan.manifest_digest, completed=completed,
                                        allow_unsigned=self.allow_unsigned, partial=record)
            # before the checkpoint hook: it lists results.json in the final run.json
            extra.append(ResultsHook(writes, on_written=checkpoint.list_results))
            extra.append(checkpoint)
        extra.append(LogHook())
        traced = tracing if isinstance(tracing, Tracing) else _get_tracing() if tracing else None
        if traced is not None:
            hook = TracingHook(traced, on_spans=SpansWriter(writes, run_id), attempt=attempt,
                               follows=follows,
                               resumed_from=state.checkpoint if state is not None else None)
            if checkpoint is not None:
                checkpoint.listeners.append(hook.on_artifact)
            if read is not None and state is not None:
                hook.note_span("checkpoint resume", "checkpoint.read", *read,
                               {"runner.url": store.url_of(RunPaths(run_id).dir),
                                "runner.fields_read": sorted(getattr(state.context, "__dict__",
                                                                     {}))})
            extra.append(hook)
            if "traceparent" not in options:
                options["traceparent"] = current_traceparent()
        if lease is not None:
            extra.append(ReleaseLock(lease))
        return DAGRunner(
            plan, executor=executor, run_id=run_id, hooks=[*hooks, *extra],
            forensics=StoreForensics(writes), workspace_root=self.workspace_root,
            cleanup=self.cleanup_workspace, resume=state, **options,
        )

    def run_pipeline(
        self,
        name: str,
        context: Any = None,
        *,
        executor: str | Executor | None = None,
        run_id: str | None = None,
        hooks: Sequence[RunHook] = (),
        handle_signals: bool = False,
        cache: bool | None = None,
        **options: Any,
    ) -> RunResult:
        """Run a pipeline defined in the manifest; see :meth:`runner` for options.

        With ``handle_signals`` (main thread only) SIGTERM and SIGINT stop the run as
        the command line does: no new step starts, the steps in flight get
        ``RUNNER_TERM_GRACE`` seconds, then :class:`RunInterruptedError`; a second
        signal (or the grace running out) records the interruption and hands the
        signal to the application's own handler. Off by default: a library does not
        take an application's handlers. Resuming a run that already succeeded runs
        nothing: ``result.already_complete`` is True, ``context`` None. ``cache``: the
        step cache, as :meth:`runner` takes it.
        """
        options["cache"] = cache
        if not options.get("resume"):  # a resumed run was checked when it started
            check_reads(self.plan(name), context, source=self.manifest.source)
            self.check_data(name, context)
        if not handle_signals:
            runner = self.runner(name, executor=executor, run_id=run_id, hooks=hooks,
                                 **options)
            return self._run(runner, context, checkpoints=options.get("checkpoints", True))
        with StopOnSignals(grace=term_grace()) as stop:
            runner = self.runner(name, executor=executor, run_id=run_id, hooks=hooks,
                                 **options)
            stop.attach(runner)
            return self._run(runner, context, checkpoints=options.get("checkpoints", True))

    def _run(self, runner: DAGRunner, context: Any, *, checkpoints: bool) -> RunResult:
        """``runner.run``; an interruption (Ctrl-C, a signal) names the call that resumes it.

        Ctrl-C stays a KeyboardInterrupt, as a Python user expects (``except Exception``
        does not swallow it, a notebook's kernel stays usable); the engine recorded it
        as ``interrupted`` already.
        """
        try:
            return runner.run(context)
        except (KeyboardInterrupt, RunInterruptedError) as exc:
            exc.add_note(self.resume_hint(runner.plan.pipeline, runner.run_id)
                         if checkpoints else "the run kept no checkpoints: run it again")
            raise

    def resume_hint(self, pipeline: str, run_id: str) -> str:
        """How to continue ``run_id``: the SDK call, and the same from the command line."""
        import shlex

        args = ["runner", "run", pipeline]
        source = self._manifest_arg if not isinstance(self._manifest_arg, Manifest) \
            else self._manifest_arg.source
        if not str(source).startswith("<") and str(source) != str(default_manifest()):
            args += ["-m", str(source)]  # not "<manifest>": one given as a Manifest object
        if self.artifacts != "data/artifacts":
            args += ["--artifacts", self.artifacts]
        for folder in self.path:
            args += ["--path", folder]
        command = shlex.join([*args, "--resume", "--run-id", run_id])
        return (f"continue it with: sdk.run_pipeline({pipeline!r}, run_id={run_id!r}, "
                f"resume=True), or from a shell: {command}")

    def check_data(self, pipeline: str, context: Any) -> list[str]:
        """Check the prices ``context.params["data"]`` names as the pipeline's shipped
        stages will read them, before anything runs (:mod:`runner.prices`).

        Raises :class:`~runner.errors.DataError` (exit 2) for data they cannot use;
        returns the fixes they will apply, each also logged as a warning. Nothing is
        read without ``data`` or when no shipped stage of the pipeline reads it.
        """
        params = getattr(context, "params", None)
        if not isinstance(params, dict) or not params.get("data"):
            return []
        from runner.prices import preflight  # pandas: only for a run with a user's data

        shipped = [s.name for s in self.plan(pipeline).stages
                   if s.entry.qualname.startswith("runner.stages.")]
        notes = preflight(params, stages=shipped, pipeline=pipeline)
        for note in notes:
            log.warning("note: %s: %s", params["data"], note, extra={"event": "note"})
        return notes

    def workspace(self, run_id: str) -> Path:
        """The scratch folder of a run."""
        return workspace_path(run_id, self.workspace_root)

    def cleanup_workspace(self, run_id: str) -> bool:
        """Remove a run's scratch workspace; artifacts and forensics are never touched."""
        return remove_workspace(run_id, self.workspace_root)


def _resumable(store: ArtifactStore, run_id: str, *, start_if_new: bool,
               allow_unsigned: bool) -> RunDoc | None:
    """The run document of the run ``--resume`` continues (None: it starts afresh).

    A run id the store has never seen is refused, with the close ones it has, unless
    ``start_if_new``; a folder without run.json (a run killed before it recorded
    anything) starts afresh, as it always did.
    """
    paths = RunPaths(run_id)
    if store.exists(paths.run_file):
        return read_run(store, run_id, allow_unsigned=allow_unsigned)
    if start_if_new or store.listdir(paths.dir):
        return None
    known = [name for name in store.listdir(RUNS) if is_run_id(name)]
    raise UsageError(f"--resume: no run {run_id!r} in {store.url_of(RUNS)}"
                     f"{did_you_mean(run_id, known)}; runner runs list shows the runs there "
                     "(drop --resume to start a new run with this id)")


def _recorded_executor(doc: RunDoc) -> str | None:
    """The executor run.json says the run started on (None: the default), when it is
    one this runner knows."""
    if doc.executor in EXECUTORS:
        return doc.executor
    log.warning("run %s started on executor %r, which this runner does not know; "
                "resuming on the default one (-e to choose)", doc.run_id, doc.executor)
    return None
