"""The ``runner`` command line: validate, list, run, graph, schema.

Exit codes: 0 success; 1 the run failed (a stage raised, branches collided);
2 invalid manifest or usage. Errors are one clear block on stderr, never a
traceback; ``--json`` prints exactly one JSON object on stdout.
"""

import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from runner import cli_coerce
from runner.cli_cache import Check
from runner.cli_format import PipelineArg, RunnerTyper
from runner.cli_help import defer_rich_extras
from runner.errors import (
    EXIT_CODES,
    INTERNAL_ERROR,
    ContextCollisionError,
    RunInterruptedError,
    RunnerError,
    StageFailedError,
    UsageError,
    exit_code_of,
)
from runner.json_stdout import note_error, print_json_error, stage_output_to_stderr, wants_json
from runner.json_stdout import print_json as _print_json
from runner.k8s_cli import register as register_k8s
from runner.manifest_json import default_manifest
from runner.orchestration.hooks import RunHook
from runner.runs_cli import (
    AllowUnsignedOpt,
    ArtifactsOpt,
    StorageOpt,
    artifacts_app,
    report_command,
    runs_app,
    trace_command,
)
from runner.telemetry.logs import configure_logging
from runner.words import did_you_mean, plural

if TYPE_CHECKING:
    # Loaded by the commands that use them: ``--help`` needs none of pandas, the
    # manifest's models, the store or OpenTelemetry (tests/unit/test_cli_imports.py).
    from runner.manifest import Manifest
    from runner.orchestration.plan import Plan
    from runner.orchestration.records import RunResult
    from runner.orchestration.runner import DAGRunner
    from runner.sdk import QuantSDK
    from runner.telemetry import Tracing

__all__ = ["app", "main"]

defer_rich_extras()  # typer's rich help, without rich.markdown and rich.traceback
cli_coerce.install()  # typer's coercion of str, Enum and Path options, without pydantic

app = RunnerTyper(
    name="runner",
    help="Declarative pipeline runner for quant research.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

class LogFormat(str, Enum):
    text = "text"
    json = "json"


def _version(value: bool) -> None:
    """``--version``: the installed package's version, from its metadata (cheap)."""
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("runner")
    except PackageNotFoundError:
        found = "unknown (not installed as a package)"
    out.print(f"runner {found}")
    raise typer.Exit(0)


@app.callback()
def _setup(
    log_format: Annotated[LogFormat, typer.Option(
        "--log-format", envvar="RUNNER_LOG_FORMAT",
        help="Log lines as text or JSON (each with run_id, trace_id, span_id); this "
        "option and --log-level may also follow the command")]
    = LogFormat.text,
    log_level: Annotated[str | None, typer.Option(
        "--log-level", envvar="RUNNER_LOG_LEVEL", metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR [default: INFO with json, else WARNING]",
        show_default=False)] = None,
    show_version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, expose_value=False,
        help="Print the version and exit")] = False,
) -> None:
    """Declarative pipeline runner for quant research."""
    level = (log_level or ("INFO" if log_format is LogFormat.json else "WARNING")).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise UsageError(f"--log-level {log_level!r}: expected DEBUG, INFO, WARNING or ERROR"
                         + did_you_mean(level, ("DEBUG", "INFO", "WARNING", "ERROR")))
    configure_logging(log_format.value, level)
    _LOGS["format"] = log_format.value


_LOGS = {"format": "text"}
"""With ``--log-format json`` stderr holds JSON log lines only: no progress display."""


app.add_typer(runs_app, name="runs")
app.add_typer(artifacts_app, name="artifacts")
app.command("trace")(trace_command)
app.command("report")(report_command)
register_k8s(app)

ManifestOpt = Annotated[
    str | None,
    typer.Option("--manifest", "-m", metavar="FILE",
                 help="Manifest path [env RUNNER_MANIFEST; default "
                 "configs/manifest.json]", show_default=False),
]


PathOpt = Annotated[
    list[Path] | None,
    typer.Option("--path", metavar="FOLDER",
                 help="A folder where the manifest's 'module:attr' paths are also "
                 "found (besides installed packages and the manifest's folder); repeatable",
                 show_default=False),
]


class ExecutorName(str, Enum):
    inline = "inline"
    threads = "threads"
    processes = "processes"
    ray = "ray"


class GraphFormat(str, Enum):
    mermaid = "mermaid"
    dot = "dot"
    svg = "svg"
    png = "png"


def _fail(error: RunnerError) -> NoReturn:
    note_error(str(error))
    if _LOGS["format"] == "json":
        logging.getLogger("runner").error("%s", error, extra={
            "event": "error", "error_type": type(error).__name__,
            "exit_code": exit_code_of(error)})
    else:
        err.print(f"[bold red]error:[/] {escape(str(error))}", markup=True, highlight=False)
    raise typer.Exit(exit_code_of(error))


def _sdk(manifest: str | None, artifacts: str | None = None,
         storage_option: list[str] | None = None, *, path: list[Path] | None = None,
         allow_unsigned: bool = False) -> "QuantSDK":
    from runner.artifacts import storage_options_from
    from runner.sdk import QuantSDK

    try:
        options = storage_options_from(storage_option or [])
    except RunnerError as exc:
        _fail(exc)
    return QuantSDK(manifest or default_manifest(), artifacts=artifacts,
                    storage_options=options, path=path or (), allow_unsigned=allow_unsigned)


NoCacheOpt = Annotated[bool, typer.Option(
    "--no-cache", help="Check in full, not trusting the outcome kept from the last check "
    "that passed (kept while the manifest, the modules it imported and the environment "
    "are unchanged) [env RUNNER_NO_CACHE]")]


def _manifest(manifest: str | None, *, path: list[Path] | None) -> "Manifest":
    """The manifest alone, as :attr:`QuantSDK.manifest` loads it, without the SDK's
    store, engine and tracing: what ``list`` and ``validate`` need."""
    from runner.manifest import load_manifest
    from runner.registry import add_module_folders

    add_module_folders(str(p) for p in path or ())  # after the manifest's own folder
    return load_manifest(manifest or default_manifest())


def _check(command: str, manifest: str | None, path: list[Path] | None, *,
           no_cache: bool) -> Check:
    return Check(command, manifest or default_manifest(), folders=path or (),
                 enabled=not no_cache)


@app.command()
def validate(manifest: ManifestOpt = None, path: PathOpt = None,
             no_cache: NoCacheOpt = False) -> None:
    """Check the manifest: JSON, schema, names, cycles, adapters, collisions."""
    check = _check("validate", manifest, path, no_cache=no_cache)
    found = check.lookup()
    if found is None:
        try:
            parsed = _manifest(manifest, path=path)
        except RunnerError as exc:
            _fail(exc)
        from runner.orchestration.contracts import check_manifest_reads
        from runner.orchestration.plan import compile_all  # the stages import pandas anyway

        try:
            plans = compile_all(parsed)
            check_manifest_reads(parsed, plans)
        except RunnerError as exc:
            _fail(exc)
        stages = {s.name for p in plans.values() for s in p.stages}
        found = {"source": parsed.source, "pipelines": len(plans), "stages": len(stages)}
        check.keep(found)
    err.print(f"[green]ok[/] {found['source']}: {plural(found['pipelines'], 'pipeline')}, "
              f"{plural(found['stages'], 'stage')}")


@app.command("list")
def list_pipelines(manifest: ManifestOpt = None, path: PathOpt = None,
                   no_cache: NoCacheOpt = False,
                   as_json: Annotated[bool, typer.Option(
                       "--json", help="Print one JSON object on stdout: the manifest and "
                       "its pipelines (name, steps, context, description)")] = False) -> None:
    """List the manifest's pipelines."""
    check = _check("list", manifest, path, no_cache=no_cache)
    found = check.lookup()
    if not isinstance(found, dict):
        try:
            parsed = _manifest(manifest, path=path)
        except RunnerError as exc:
            _fail(exc)
        found = {"manifest": parsed.source, "pipelines": [
            {"name": name, "steps": len(spec.steps), "context": spec.context,
             "description": spec.description or ""}
            for name, spec in parsed.pipelines.items()]}
        check.keep(found)
    if as_json:
        _print_json(found)
        return
    from rich.table import Table

    table = Table("pipeline", "steps", "context", "description", box=None)
    for row in found["pipelines"]:
        table.add_row(row["name"], str(row["steps"]),
                      (row["context"] or "-").rpartition(":")[2], row["description"])
    out.print(table)


@app.command()
def schema() -> None:
    """Print the manifest's JSON Schema."""
    from runner.manifest import dump_schema

    sys.stdout.write(dump_schema())


@app.command()
def graph(
    pipeline: PipelineArg,
    manifest: ManifestOpt = None,
    fmt: Annotated[GraphFormat, typer.Option("--format", "-f", help="Output format")]
    = GraphFormat.mermaid,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE",
        help="Write to this file [default: mermaid and dot to stdout, "
        "svg and png to PIPELINE.svg/.png]", show_default=False)] = None,
    path: PathOpt = None,
) -> None:
    """Draw a pipeline's DAG (Mermaid text; DOT, SVG or PNG with Graphviz)."""
    from runner.orchestration.graph import render_dot, render_mermaid

    try:
        plan = _sdk(manifest, path=path).plan(pipeline)
    except RunnerError as exc:
        _fail(exc)
    if fmt in (GraphFormat.mermaid, GraphFormat.dot):
        text = render_mermaid(plan) if fmt is GraphFormat.mermaid else render_dot(plan)
        if output is None:
            sys.stdout.write(text)
            return
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            _fail(UsageError(f"--output {output}: cannot write it: {exc.strerror or exc}"))
        err.print(f"wrote {escape(str(output))}")
        return
    import shutil
    import subprocess

    dot = shutil.which("dot")
    if dot is None:
        _fail(UsageError("--format svg/png needs Graphviz's 'dot' program: install it "
                         "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install "
                         "graphviz) or use --format mermaid|dot"))
    target = output or Path(f"{pipeline}.{fmt.value}")
    subprocess.run([dot, f"-T{fmt.value}", "-o", str(target)], input=render_dot(plan),
                   text=True, check=True)
    err.print(f"wrote {escape(str(target))}")


def _progress() -> RunHook:
    """The live board on a terminal, plain lines elsewhere (:mod:`runner.progress`)."""
    from runner.progress import progress_hook

    try:
        return progress_hook(err)
    except UsageError as exc:  # RUNNER_PROGRESS_EVERY
        _fail(exc)


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


def _steps_json(records: Any) -> list[dict[str, Any]]:
    return [{"name": r.name, "path": r.path, "status": r.status,
             "duration_s": round(r.duration, 6), "executor": r.executor, "pid": r.pid,
             "node": r.node, "branch": r.branch} for r in records]


def _summary(result: "RunResult", sdk: "QuantSDK") -> None:
    """Where the run's files are and how long it took (stderr: status, not results)."""
    store = sdk.store()
    err.print(f"checkpoints: {store.url_of('runs', result.run_id)}  (runner runs show "
              f"{result.run_id}); forensics on failure go to "
              f"{store.url_of('summaries', 'runs', result.run_id)}")
    err.print(f"[green]succeeded[/] in {result.duration:.2f}s  run_id={result.run_id}  "
              f"trace_id={result.trace_id}")


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


@app.command()
def run(
    pipeline: PipelineArg,
    manifest: ManifestOpt = None,
    run_id: Annotated[str | None, typer.Option(
        "--run-id", help="Run id [default: new]; with --resume, the run to continue",
        show_default=False)]
    = None,
    executor: Annotated[ExecutorName | None, typer.Option(
        "--executor", "-e", help="Where parallel branches run [default: inline, or "
        "processes when TV_ORCH_PARALLEL=1]", show_default=False)] = None,
    artifacts: ArtifactsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")]
    = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output")] = False,
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", metavar="KEY=VALUE",
        help="KEY=VALUE into the context's params (VALUE parsed as JSON "
        "when it can be); repeatable", show_default=False)] = None,
    data: Annotated[str | None, typer.Option(
        "--data", metavar="FILE",
        help="Your own daily prices, a CSV or Parquet file (any fsspec URL), "
        "checked before the run: wide (date,AAPL,MSFT: one column of adjusted closes per "
        "ticker) or long (date,ticker,close: one row per date and ticker); example: "
        "configs/example_prices.csv. The same as --param data=URL",
        show_default=False)] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue --run-id after its last completed step")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="With --resume: accept a manifest changed since the run started")]
    = False,
    or_start: Annotated[bool, typer.Option(
        "--or-start", help="With --resume: start the run when the store has no run of "
        "this id yet (what a Kubernetes Job's first pod does) instead of refusing")]
    = False,
    storage_option: StorageOpt = None,
    path: PathOpt = None,
    allow_unsigned: AllowUnsignedOpt = False,
) -> None:
    """Run a pipeline locally.

    SIGTERM or SIGINT stops it: no new step starts, the steps in flight get
    RUNNER_TERM_GRACE seconds (20), then it exits 143 (130 for SIGINT) with the
    command that resumes it; a second signal stops it at once.
    """
    if resume and not run_id:
        _fail(UsageError("--resume needs the --run-id of the run to continue"))
    structured = _LOGS["format"] == "json"
    if _on_processes(executor):  # first: it imports the stages beside our first steps
        _start_workers(pipeline, manifest, path, as_json=as_json,
                       relayed=not quiet and not structured)
    from runner.orchestration.contracts import check_reads
    from runner.orchestration.signals import StopOnSignals, term_grace

    sdk = _sdk(manifest, artifacts, storage_option, path=path, allow_unsigned=allow_unsigned)
    tracing = _global_tracing()
    gc.freeze()  # the libraries, before the stage modules and plan (frozen again below)
    hooks = [] if quiet or structured else [_progress()]
    doc: dict[str, Any] = {"run_id": run_id, "pipeline": pipeline}
    params = _parse_params([*(param or []), *([f"data={data}"] if data else [])])

    def exit_now(error: RunInterruptedError | None, signum: int) -> None:
        """A second signal, or the grace ran out: say so and exit, not waiting on
        anything (a stage may still run; the interruption is recorded already)."""
        _exit_after_signal(_interrupted(error, signum, doc, as_json=as_json,
                                        structured=structured))

    try:
        stop = StopOnSignals(grace=term_grace(), on_abort=exit_now)
        with stage_output_to_stderr(as_json), stop:  # --json: stdout is the JSON only
            root = _root_context(sdk.plan(pipeline), params)  # refused before the id is taken
            check_reads(sdk.plan(pipeline), root, source=sdk.manifest.source)
            sdk.check_data(pipeline, root)  # a file the stages cannot use: exit 2 now
            runner = sdk.runner(pipeline, executor=executor.value if executor else None,
                                run_id=run_id, hooks=hooks, resume=resume, force=force,
                                start_if_new=or_start)
            if resume and hooks:
                _say_resuming(runner, chosen=executor is not None)
            stop.attach(runner)
            doc.update(run_id=runner.run_id, trace_id=runner.trace_id)
            # what is loaded by now (modules, the plan) lives as long as this process:
            # no full collection walks it again during the run (their cost would not
            # be per step, but land wherever the heap happened to cross a threshold)
            gc.freeze()
            try:
                result = runner.run(root)
            finally:
                if tracing is not None:
                    tracing.close()  # this process ends with the run: stop any retries now
    except RunInterruptedError as exc:
        _SIGNALLED["exit"] = True
        raise typer.Exit(_interrupted(exc, exc.signum, doc, as_json=as_json,
                                      structured=structured)) from None
    except (StageFailedError, ContextCollisionError) as exc:
        _failed(exc, doc, as_json=as_json, quiet=quiet, structured=structured)
    except RunnerError as exc:
        if as_json:
            doc.update(status="failed", steps=[], error=str(exc), exit_code=exit_code_of(exc))
            _print_json(doc)
        _fail(exc)
    _succeeded(result, sdk, doc, as_json=as_json, quiet=quiet, structured=structured)


def _say_resuming(runner: "DAGRunner", *, chosen: bool) -> None:
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


def _failed(exc: StageFailedError | ContextCollisionError, doc: dict[str, Any], *,
            as_json: bool, quiet: bool, structured: bool) -> NoReturn:
    """Report a failed run once (the block, or one JSON log line) and exit 1."""
    run_id = exc.run_id or doc.get("run_id")
    resume = _resume_command(str(run_id)) if run_id else None
    code = exit_code_of(exc)
    doc.update(status="failed", steps=_steps_json(exc.records), error=str(exc),
               exit_code=code, error_context=exc.error_context, resume_command=resume)
    if isinstance(exc, StageFailedError):
        doc.update(where=exc.where or None, traceback=exc.user_traceback or None)
    if as_json:
        _print_json(doc)
    if structured:
        logging.getLogger("runner").error(
            "%s", exc, extra={"event": "error", "exit_code": code, "run_id": run_id,
                              "trace_id": doc.get("trace_id"),
                              "error_context": doc["error_context"], "where": doc.get("where"),
                              "traceback": doc.get("traceback"), "resume_command": resume})
    elif not quiet or not as_json:
        _failure_block(exc, resume=resume)
    raise typer.Exit(code) from None


_DRIVER_IMPORTS = ("runner.orchestration.contracts", "runner.orchestration.execute",
                   "runner.sdk", "pandas", "pyarrow.parquet")
"""What ``run`` imports anyway before its first step: imported before the forkserver
is forked from it, so the forkserver (and every worker) inherits them."""


def _on_processes(executor: ExecutorName | None) -> bool:
    """Whether parallel branches will run in worker processes (``-e processes``, or
    ``TV_ORCH_PARALLEL=1`` without Ray installed), known before anything is imported."""
    if executor is not None:
        return executor.value == "processes"
    flag = os.environ.get("TV_ORCH_PARALLEL", "").strip().lower()
    if flag not in ("1", "true", "yes", "on"):
        return False
    import importlib.util

    return importlib.util.find_spec("ray") is None


def _global_tracing() -> "Tracing | None":
    """The process's tracing (None when disabled), installed globally so that spans
    the stages' own code makes nest under their step."""
    from runner.telemetry import get_tracing

    tracing = get_tracing()
    if tracing is not None:
        tracing.install_global()
    return tracing


_SIGNALLED = {"exit": False}
"""Set when a run stopped on a signal: :func:`main` then ends the process at once."""


def _exit_after_signal(code: int) -> None:
    """End a process whose run a signal stopped, once everything is recorded.

    Everything the run owns is durable by then (checkpoint, run.json, spans, lease
    released), and a pod being stopped should stop promptly. Finalising the
    interpreter after a signal is not safe with every native library loaded: Ray's
    core worker was seen corrupting the heap at that point (``free(): invalid next
    size``, SIGABRT instead of exit 143). So the streams and logs are flushed and the
    process exits without finalisation.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _succeeded(result: "RunResult", sdk: "QuantSDK", doc: dict[str, Any], *, as_json: bool,
               quiet: bool, structured: bool) -> None:
    """What a successful (or already complete) run prints."""
    if result.extras.get("already_complete"):
        doc.pop("trace_id", None)  # nothing ran: no trace
        doc.update(status="succeeded", already_complete=True, steps=[])
        if as_json:
            _print_json(doc)
        if structured:
            logging.getLogger("runner").info("run %s already succeeded: nothing to resume",
                                             result.run_id, extra={"event": "run_ended"})
        elif not quiet:
            err.print(f"run {result.run_id} already succeeded: nothing to resume "
                      f"(runner runs show {result.run_id})")
        return
    from runner.artifacts.results import context_report
    from runner.cli_results import log_results, print_results

    doc.update(status="succeeded", steps=_steps_json(result.records))
    report = (result.extras["report"] if "report" in result.extras
              else context_report(result.context))
    if report is not None:
        doc["result"] = report
    if as_json:
        _print_json(doc)
    elif structured:
        if report:
            log_results(report, run_id=result.run_id, trace_id=result.trace_id)
    else:
        if report:
            print_results(report, out)  # results on stdout: `> file` keeps them
        if not quiet:
            _summary(result, sdk)


def _resume_command(run_id: str) -> str:
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


def _interrupted(error: RunInterruptedError | None, signum: int, doc: dict[str, Any], *,
                 as_json: bool, structured: bool) -> int:
    """Say the run was interrupted and how to continue it; the exit code (128 + N)."""
    name = signal.Signals(signum).name
    run_id = doc.get("run_id")
    command = _resume_command(str(run_id)) if run_id else None
    what = str(error) if error is not None else (
        f"run {run_id!r} interrupted by {name} before it could be recorded" if run_id
        else f"interrupted by {name} before the run started")
    doc.update(status="interrupted", signal=name,
               completed=list(error.completed) if error is not None else [],
               forced=error.forced if error is not None else True,
               steps=_steps_json(error.records) if error is not None else [],
               resume_command=command, exit_code=EXIT_CODES[RunInterruptedError] + signum)
    if as_json:
        _print_json(doc)
    line = f"{what}; continue it with: {command}" if command else what
    if structured:
        logging.getLogger("runner").warning("%s", line, extra={
            "event": "interrupted", "signal": name, "exit_code": doc["exit_code"]})
    else:
        err.print(f"[bold yellow]interrupted:[/] {escape(line)}", markup=True,
                  highlight=False)
    return int(doc["exit_code"])


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def _root_context(plan: "Plan", params: dict[str, Any]) -> Any:
    """The pipeline's root context, with ``--param`` values in its ``params``."""
    if not params:
        return None
    fields = getattr(plan.context_type, "model_fields", {})
    if "params" not in fields:
        raise UsageError(f"pipeline {plan.pipeline!r}: its {plan.context_type.__name__} has no "
                         "'params' field, so --param/--data cannot apply")
    return plan.context_type(params=params)


def _drop_current_folder() -> None:
    """Never import from the current folder because it is current (``python -m``
    puts it first): a planted ``scipy.py`` there, or a package under the default store
    ``data/artifacts``, must not run. Stage modules are found beside the manifest."""
    if sys.path and sys.path[0] in ("", str(Path.cwd())):
        del sys.path[0]


GLOBAL_OPTIONS = ("--log-format", "--log-level")
"""The options of ``runner`` itself (each takes a value), accepted after the command too."""


def globals_first(args: list[str]) -> list[str]:
    """``args`` with the global options given after the command moved before it:
    ``runner run demo --log-format json`` is ``runner --log-format json run demo``
    (click only knows a group's options before its command). Nothing after ``--``
    moves, nor the value of an option that takes one."""
    command = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return args
        if arg in GLOBAL_OPTIONS:
            i += 2
            continue
        if not arg.startswith("-"):
            command = i
            break
        i += 1
    if command is None:
        return args
    moved: list[str] = []
    rest: list[str] = []
    i = command + 1
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in GLOBAL_OPTIONS and i + 1 < len(args):
            moved.extend(args[i:i + 2])
            i += 2
            continue
        if arg.partition("=")[0] in GLOBAL_OPTIONS and "=" in arg:
            moved.append(arg)
        else:
            rest.append(arg)
        i += 1
    return [*args[:command], *moved, args[command], *rest]


def main() -> None:
    """Console-script entry point.

    A bug in the runner itself (not in a stage, not in the input) exits 3 with
    one line; ``RUNNER_DEBUG=1`` shows the traceback.
    """
    configure_logging("text", logging.WARNING)
    _drop_current_folder()
    sys.argv[1:] = globals_first(sys.argv[1:])  # --log-format after the command works too
    as_json = wants_json(sys.argv[1:])
    try:
        _main()
    except SystemExit as exc:
        if as_json and isinstance(exc.code, int) and exc.code != 0:
            print_json_error(exc.code)  # stdout: a JSON object, whatever went wrong
        raise


def _main() -> None:
    try:
        app()  # usage errors exit 2 and --help exits 0 inside, as SystemExit
    except SystemExit as exc:
        if _SIGNALLED["exit"] and isinstance(exc.code, int):
            _exit_after_signal(exc.code)
        raise
    except KeyboardInterrupt as exc:
        note_error("aborted")
        err.print("aborted")
        sys.exit(exit_code_of(exc))
    except RunnerError as exc:
        note_error(str(exc))
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(exit_code_of(exc))
    except Exception as exc:
        if os.environ.get("RUNNER_DEBUG"):
            raise
        note_error(f"internal error: {type(exc).__name__}: {exc}")
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
                  "  this is a bug in runner; rerun with RUNNER_DEBUG=1 for the traceback")
        sys.exit(INTERNAL_ERROR)


if __name__ == "__main__":
    main()
