"""``runner run``: a pipeline, locally, from the command line.

The options are one :class:`RunOptions`; the run goes through the SDK (store,
lease, checkpoints, tracing) under :class:`~runner.orchestration.signals.StopOnSignals`;
what it prints when it ends is :mod:`runner.cli.run_report`'s. With worker
processes, their forkserver is started first (:func:`_start_workers`), forked once the
driver's heavy imports are done.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runner.cli.json_stdout import print_json, stage_output_to_stderr
from runner.cli.options import (
    AllowUnsignedOpt,
    ArtifactsOpt,
    CacheOpt,
    JsonOpt,
    ManifestOpt,
    Options,
    ParamOpt,
    PathOpt,
    PipelineArg,
    StorageOpt,
    options_command,
)
from runner.cli.output import console_of, err, exit_after_signal, is_structured, signalled
from runner.cli.parsing import open_sdk, params, root_context
from runner.cli.run_report import failed, interrupted, say_partial, say_resuming, succeeded
from runner.cli.startup_gc import resume
from runner.errors import (
    ContextCollisionError,
    RunInterruptedError,
    RunnerError,
    StageFailedError,
    UsageError,
    exit_code_of,
)
from runner.retry import env_flag

if TYPE_CHECKING:
    from runner.orchestration.hooks import RunHook
    from runner.orchestration.records import RunResult
    from runner.sdk import QuantSDK
    from runner.telemetry import Tracing

__all__ = ["ExecutorName", "RunOptions", "register", "run"]


class ExecutorName(str, Enum):
    inline = "inline"
    threads = "threads"
    processes = "processes"
    ray = "ray"


class RunOptions(Options):
    """What ``runner run`` is told: the pipeline, its inputs, where it runs and what it
    prints."""

    pipeline: PipelineArg
    manifest: ManifestOpt = None
    run_id: Annotated[str | None, typer.Option(
        "--run-id", help="Run id [default: new]; with --resume, the run to continue",
        show_default=False)] = None
    executor: Annotated[ExecutorName | None, typer.Option(
        "--executor", "-e", help="Where parallel branches run [default: inline; with "
        "TV_ORCH_PARALLEL=1, ray when Ray is installed, else processes]",
        show_default=False)] = None
    artifacts: ArtifactsOpt = None
    as_json: JsonOpt = False
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output")] = False
    param: ParamOpt = None
    data: Annotated[str | None, typer.Option(
        "--data", metavar="FILE",
        help="Your own daily prices, a CSV or Parquet file (any fsspec URL), "
        "checked before the run: wide (date,AAPL,MSFT: one column of adjusted closes per "
        "ticker) or long (date,ticker,close: one row per date and ticker); example: "
        "configs/example_prices.csv. The same as --param data=URL",
        show_default=False)] = None
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue --run-id after its last completed step")] = False
    force: Annotated[bool, typer.Option(
        "--force", help="With --resume: accept a manifest changed since the run started")
    ] = False
    or_start: Annotated[bool, typer.Option(
        "--or-start", help="With --resume: start the run when the store has no run of "
        "this id yet (what a Kubernetes Job's first pod does) instead of refusing")] = False
    cache: CacheOpt = None
    from_step: Annotated[str | None, typer.Option(
        "--from", metavar="STEP", show_default=False,
        help="Start a new run at this main-line step (name or path), from the --origin "
        "run's checkpoint before it")] = None
    origin: Annotated[str | None, typer.Option(
        "--origin", metavar="RUN_ID", show_default=False,
        help="With --from: the run whose checkpoint the new run starts from")] = None
    to_step: Annotated[str | None, typer.Option(
        "--to", metavar="STEP", show_default=False,
        help="Stop after this main-line step (name or path): the run succeeds without "
        "the steps after it")] = None
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the steps that would run, running nothing and writing "
        "no run; with --cache, per step: cached, or why it would run")] = False
    storage_option: StorageOpt = None
    path: PathOpt = None
    allow_unsigned: AllowUnsignedOpt = False


def _progress() -> RunHook:
    """The live board on a terminal, plain lines elsewhere (:mod:`runner.progress`)."""
    from runner.progress import progress_hook

    return progress_hook(console_of(err))


# -------------------------------------------------- the worker processes' forkserver


def _relay_workers(as_json: bool) -> tuple[dict[int, int], Callable[[], None]]:
    """On a terminal, worker processes write through the driver, above the live board
    (their stdout too when it is that terminal, or stderr already with ``--json``).
    Returns the descriptors to redirect and what starts the relay's thread (after the
    forkserver is forked: the driver is one thread until then)."""
    if not err.is_interactive:
        return {}, lambda: None
    from runner.terminal import relay_pipe

    pipe, start = relay_pipe()
    return ({1: pipe, 2: pipe} if as_json or sys.stdout.isatty() else {2: pipe}), start


def _start_workers(pipeline: str, manifest: str | None, path: list[Path] | None, *,
                   as_json: bool, relayed: bool) -> None:
    """Start the worker processes' forkserver (forked once the driver's heavy imports are
    done), its output relayed above the live board when there is one."""
    from runner.orchestration.forkserver import start_forkserver

    relay, start_relay = _relay_workers(as_json) if relayed else ({}, lambda: None)
    start_forkserver(pipeline=pipeline, manifest=manifest,
                     path=[str(p) for p in path or ()], stdout_to_stderr=as_json,
                     redirect=relay, fork_after=_DRIVER_IMPORTS)
    start_relay()
    for fd in set(relay.values()):
        os.close(fd)  # the forkserver has it


_DRIVER_IMPORTS = ("runner.orchestration.contracts", "runner.orchestration.execute",
                   "runner.sdk", "pandas", "pyarrow.parquet")
"""What ``run`` imports anyway before its first step: imported before the forkserver
is forked from it, so the forkserver (and every worker) inherits them."""


def _on_processes(executor: ExecutorName | None) -> bool:
    """Whether parallel branches will run in worker processes (``-e processes``, or
    ``TV_ORCH_PARALLEL=1`` without Ray installed), known before anything is imported."""
    if executor is not None:
        return executor.value == "processes"
    if not env_flag("TV_ORCH_PARALLEL"):
        return False
    import importlib.util

    return importlib.util.find_spec("ray") is None


# -------------------------------------------------------------------- the run


def _global_tracing() -> Tracing | None:
    """The process's tracing (None when disabled), installed globally so that spans
    the stages' own code makes nest under their step."""
    from runner.telemetry import get_tracing

    tracing = get_tracing()
    if tracing is not None:
        tracing.install_global()
    return tracing


def _execute(sdk: QuantSDK, pipeline: str, given: dict[str, Any], doc: dict[str, Any], *,
             choices: RunOptions, hooks: list[RunHook], tracing: Tracing | None) -> RunResult:
    """Check the inputs, take the run's id and run it, stopping on SIGTERM or SIGINT."""
    from runner.orchestration.contracts import check_reads
    from runner.orchestration.signals import StopOnSignals, term_grace

    def exit_now(error: RunInterruptedError | None, signum: int) -> None:
        """A second signal, or the grace ran out: say so and exit, not waiting on
        anything (a stage may still run; the interruption is recorded already)."""
        exit_after_signal(interrupted(error, signum, doc, as_json=choices.as_json))

    stop = StopOnSignals(grace=term_grace(), on_abort=exit_now)
    with stage_output_to_stderr(choices.as_json), stop:  # --json: stdout is the JSON only
        plan = sdk.plan(pipeline)
        root = root_context(plan, given)  # refused before the id is taken
        check_reads(plan, root, source=sdk.manifest.source)
        sdk.check_data(pipeline, root)  # a file the stages cannot use: exit 2 now
        executor = choices.executor
        runner = sdk.runner(pipeline, executor=executor.value if executor else None,
                            run_id=choices.run_id, hooks=hooks, resume=choices.resume,
                            force=choices.force, start_if_new=choices.or_start,
                            from_step=choices.from_step, origin=choices.origin,
                            to_step=choices.to_step, cache=choices.cache)
        if choices.resume and hooks:
            say_resuming(runner, chosen=executor is not None)
        doc.update(say_partial(sdk, pipeline, from_step=choices.from_step, origin=choices.origin,
                               to_step=choices.to_step, say=bool(hooks)))
        stop.attach(runner)
        doc.update(run_id=runner.run_id, trace_id=runner.trace_id)
        # what is loaded by now (modules, the plan) lives as long as this process:
        # no full collection walks it again during the run (their cost would not
        # be per step, but land wherever the heap happened to cross a threshold)
        gc.freeze()
        resume(freeze=False)  # the start-up is over: the collector on (:mod:`.startup_gc`)
        try:
            return runner.run(root)
        finally:
            if tracing is not None:
                tracing.close()  # this process ends with the run: stop any retries now


def run(options: RunOptions) -> None:
    """Run a pipeline locally.

    SIGTERM or SIGINT stops it: no new step starts, the steps in flight get
    RUNNER_TERM_GRACE seconds (20), then it exits 143 (130 for SIGINT) with the
    command that resumes it; a second signal stops it at once.
    """
    if options.resume and not options.run_id:
        raise UsageError("--resume needs the --run-id of the run to continue")
    if options.from_step is not None and (options.param or options.data):
        raise UsageError("--from starts from the --origin run's context: its params are "
                         "that run's (--param and --data do not apply)")
    if options.dry_run:
        from runner.cli.dry_run import dry_run

        dry_run(options)
        return
    as_json, quiet = options.as_json, options.quiet
    if _on_processes(options.executor) and not options.cache:
        # first: it imports the stages beside our first steps (with --cache, a group
        # cached whole starts no worker: the engine starts them on the first dispatch)
        _start_workers(options.pipeline, options.manifest, options.path, as_json=as_json,
                       relayed=not quiet and not is_structured())
    sdk = open_sdk(options.manifest, artifacts=options.artifacts,
                   storage_option=options.storage_option, path=options.path,
                   allow_unsigned=options.allow_unsigned)
    tracing = _global_tracing()
    gc.freeze()  # the libraries, before the stage modules and plan (frozen again below)
    hooks = [] if quiet or is_structured() else [_progress()]
    data = [f"data={options.data}"] if options.data else []
    given = params([*(options.param or []), *data])
    doc: dict[str, Any] = {"run_id": options.run_id, "pipeline": options.pipeline}
    try:
        result = _execute(sdk, options.pipeline, given, doc, choices=options, hooks=hooks,
                          tracing=tracing)
    except RunInterruptedError as exc:
        signalled()
        raise typer.Exit(interrupted(exc, exc.signum, doc, as_json=as_json)) from None
    except (StageFailedError, ContextCollisionError) as exc:
        failed(exc, doc, as_json=as_json, quiet=quiet)
    except RunnerError as exc:
        if as_json:
            doc.update(status="failed", steps=[], error=str(exc), exit_code=exit_code_of(exc))
            print_json(doc)
        raise
    succeeded(result, sdk, doc, as_json=as_json, quiet=quiet)


def register(app: typer.Typer) -> None:
    """Add ``run`` to the ``runner`` app."""
    app.command()(options_command(RunOptions, run))
