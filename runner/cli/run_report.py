"""What ``runner run`` says once a run ends: succeeded (its results), failed (the error,
the user's frame, the forensics and how to resume) or interrupted by a signal.

Each ending is said once: a block on stderr, one JSON log line with ``--log-format
json``, and with ``--json`` the run's one JSON object on stdout (``doc``), whose
``steps`` are the records' own :meth:`~runner.orchestration.records.StepRecord.to_dict`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from runner.cli.json_stdout import print_json
from runner.cli.markup import escape
from runner.cli.output import err, is_structured, out
from runner.errors import (
    EXIT_CODES,
    ContextCollisionError,
    RunInterruptedError,
    StageFailedError,
    exit_code_of,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from runner.orchestration.records import RunResult, StepRecord
    from runner.orchestration.runner import DAGRunner
    from runner.sdk import QuantSDK

__all__ = ["failed", "interrupted", "resume_command", "say_partial", "say_resuming",
           "succeeded"]

log = logging.getLogger("runner")


def _steps(records: Iterable[StepRecord]) -> list[dict[str, Any]]:
    return [record.to_dict() for record in records]


def resume_command(run_id: str) -> str:
    """This very command line, made to resume ``run_id``."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--run-id":
            skip = True
        elif arg != "--resume" and not arg.startswith("--run-id="):
            args.append(arg)
    import shlex

    return shlex.join(["runner", *args, "--resume", "--run-id", run_id])


def say_resuming(runner: DAGRunner, *, chosen: bool) -> None:
    """The line before a resumed run's header: which attempt, from which checkpoint,
    and why this executor (the one the run started on, unless ``-e`` chose)."""
    state = runner.resume
    if state is not None and state.finished:
        return
    why = "chosen with -e" if chosen else "as the run started; -e to change"
    where = (f"after checkpoint {state.checkpoint.removeprefix('steps/')}"
             if state is not None and state.checkpoint else "from the start (no checkpoint)")
    attempt = f" (attempt {state.attempt})" if state is not None else ""
    err.print(f"resuming run [cyan]{escape(runner.run_id)}[/]{attempt} {escape(where)} on "
              f"executor={runner.executor.name} ({why})")


def say_partial(sdk: QuantSDK, pipeline: str, *, from_step: str | None, origin: str | None,
                to_step: str | None, say: bool) -> dict[str, Any]:
    """A partial run (``--from``/``--origin``, ``--to``) said before its first step, and
    what ``--json`` says of it (``partial``: origin, from_step, to_step as paths)."""
    if from_step is None and to_step is None:
        return {}
    from runner.orchestration.plan.slicing import partial_run

    part = partial_run(sdk.plan(pipeline), from_step=from_step, origin=origin, to_step=to_step)
    if part is None:  # pragma: no cover - one of the two was given
        return {}
    if say and part.origin is not None:
        err.print(f"starting at {escape(str(part.from_step))} from run "
                  f"[cyan]{escape(part.origin)}[/]'s checkpoint after "
                  f"{escape(part.done[-1])} (--from)")
    if say and part.to_step is not None:
        err.print(f"stopping after {escape(part.to_step)} (--to)")
    record = part.record()
    del record["checkpoint"]  # run.json names it
    return {"partial": record}


def succeeded(result: RunResult, sdk: QuantSDK, doc: dict[str, Any], *, as_json: bool,
              quiet: bool) -> None:
    """What a successful (or already complete) run prints."""
    if result.already_complete:
        _already_complete(result, doc, as_json=as_json, quiet=quiet)
        return
    from runner.cli.results import log_results, print_results

    doc.update(status="succeeded", steps=_steps(result.records))
    report = result.report  # the results hook's (a run from the command line checkpoints)
    if report is not None:
        doc["result"] = report
    if as_json:
        print_json(doc)
    elif is_structured():
        if report:
            log_results(report, run_id=result.run_id, trace_id=result.trace_id)
    else:
        if report:
            print_results(report, out)  # results on stdout: `> file` keeps them
        if not quiet:
            _summary(result, sdk)
            to_step = (doc.get("partial") or {}).get("to_step")
            if to_step:
                err.print(f"stopped after {escape(to_step)} as --to asked; the steps "
                          "after it did not run")


def _already_complete(result: RunResult, doc: dict[str, Any], *, as_json: bool,
                      quiet: bool) -> None:
    doc.pop("trace_id", None)  # nothing ran: no trace
    doc.update(status="succeeded", already_complete=True, steps=[])
    if as_json:
        print_json(doc)
    if is_structured():
        log.info("run %s already succeeded: nothing to resume", result.run_id,
                 extra={"event": "run_ended"})
    elif not quiet:
        err.print(f"run {result.run_id} already succeeded: nothing to resume "
                  f"(runner runs show {result.run_id})")


def _summary(result: RunResult, sdk: QuantSDK) -> None:
    """Where the run's files are and how long it took (stderr: status, not results)."""
    store = sdk.store()
    err.print(f"checkpoints: {store.url_of('runs', result.run_id)}  (runner runs show "
              f"{result.run_id}); forensics on failure go to "
              f"{store.url_of('summaries', 'runs', result.run_id)}")
    err.print(f"[green]succeeded[/] in {result.duration:.2f}s  run_id={result.run_id}  "
              f"trace_id={result.trace_id}")


def failed(exc: StageFailedError | ContextCollisionError, doc: dict[str, Any], *,
           as_json: bool, quiet: bool) -> NoReturn:
    """Report a failed run once (the block, or one JSON log line) and exit 1."""
    run_id = exc.run_id or doc.get("run_id")
    resume = resume_command(str(run_id)) if run_id else None
    code = exit_code_of(exc)
    doc.update(status="failed", steps=_steps(exc.records), error=str(exc),
               exit_code=code, error_context=exc.error_context, resume_command=resume)
    if isinstance(exc, StageFailedError):
        doc.update(where=exc.where or None, traceback=exc.user_traceback or None)
    if as_json:
        print_json(doc)
    if is_structured():
        log.error("%s", exc, extra={
            "event": "error", "exit_code": code, "run_id": run_id,
            "trace_id": doc.get("trace_id"), "error_context": doc["error_context"],
            "where": doc.get("where"), "traceback": doc.get("traceback"),
            "resume_command": resume})
    elif not quiet or not as_json:
        _failure_block(exc, resume=resume)
    raise typer.Exit(code) from None


def _failure_block(exc: StageFailedError | ContextCollisionError, *,
                   resume: str | None) -> None:
    """The one report of a failed run: the error, the user's frame and traceback,
    the forensics and the command that continues the run once it is fixed."""
    where = exc.error_context
    err.print(f"[bold red]error:[/] {escape(str(exc))}")
    if isinstance(exc, StageFailedError):
        _print_traceback(exc)
    if where:
        err.print(f"  the context the step received: {where}\n"
                  "  load it: python -c \"from runner.artifacts import load_error_context; "
                  f"ctx = load_error_context('{where}')\"  (it checks the signature first: "
                  "never unpickle it with pickle.load)")
    if resume:
        err.print(f"  once fixed, continue the run with: {escape(resume)}")


def _print_traceback(exc: StageFailedError) -> None:
    """The last frame in the user's code first, then their short traceback (the whole
    traceback with RUNNER_DEBUG=1)."""
    if exc.where:
        err.print(f"  at [bold]{escape(exc.where)}[/]")
    if os.environ.get("RUNNER_DEBUG") and exc.traceback:
        lines = exc.traceback.rstrip().splitlines()
    elif exc.user_traceback:
        lines = exc.user_traceback.splitlines()
    elif exc.traceback and not exc.where:  # no code of the user's: the innermost frames
        lines = [*exc.traceback.strip().splitlines()[-3:], "(RUNNER_DEBUG=1 shows every frame)"]
    else:
        return
    err.print("[dim]" + escape("\n".join(f"  {line}" for line in lines)) + "[/]")


def interrupted(error: RunInterruptedError | None, signum: int, doc: dict[str, Any], *,
                as_json: bool) -> int:
    """Say the run was interrupted and how to continue it; the exit code (128 + N)."""
    name = signal.Signals(signum).name
    run_id = doc.get("run_id")
    command = resume_command(str(run_id)) if run_id else None
    what = str(error) if error is not None else (
        f"run {run_id!r} interrupted by {name} before it could be recorded" if run_id
        else f"interrupted by {name} before the run started")
    doc.update(status="interrupted", signal=name,
               completed=list(error.completed) if error is not None else [],
               forced=error.forced if error is not None else True,
               steps=_steps(error.records) if error is not None else [],
               resume_command=command, exit_code=EXIT_CODES[RunInterruptedError] + signum)
    if as_json:
        print_json(doc)
    line = f"{what}; continue it with: {command}" if command else what
    if is_structured():
        log.warning("%s", line, extra={
            "event": "interrupted", "signal": name, "exit_code": doc["exit_code"]})
    else:
        err.print(f"[bold yellow]interrupted:[/] {escape(line)}", markup=True,
                  highlight=False)
    return int(doc["exit_code"])
