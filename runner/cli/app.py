"""The ``runner`` app: its global options, its command groups, and the entry point that
maps every error to its exit code in one place.

Exit codes come from :data:`runner.errors.EXIT_CODES`: 0 success; 1 the run failed
(a stage raised, branches collided, its Job failed); 2 invalid manifest, usage or
storage; 4 the infrastructure (Ray, the worker pool); 128 + N a run a signal
stopped; 3 a bug in runner. Errors are one clear line on stderr, never a traceback;
``--json`` prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperCommand

from runner.cli import coerce
from runner.cli.format import RunnerGroup, RunnerTyper
from runner.cli.help import defer_rich_extras
from runner.cli.json_stdout import note_error, print_json_error, wants_json
from runner.cli.lazy import Deferred, LazyCommands
from runner.cli.output import (
    err,
    exit_after_signal,
    out,
    say_error,
    set_log_format,
    was_signalled,
)
from runner.errors import INTERNAL_ERROR, RunnerError, UsageError, exit_code_of
from runner.telemetry.logs import configure_logging
from runner.words import did_you_mean

__all__ = ["GLOBAL_OPTIONS", "app", "globals_first", "main"]

defer_rich_extras()  # typer's rich help, without rich.markdown and rich.traceback
coerce.install()  # typer's coercion of str, Enum and Path options, without pydantic


_K8S = "Kubernetes"
COMMANDS = {
    "validate": Deferred("runner.cli.pipelines",
                         "Check the manifest: JSON, schema, names, cycles, adapters, "
                         "collisions."),
    "list": Deferred("runner.cli.pipelines", "List the manifest's pipelines."),
    "schema": Deferred("runner.cli.pipelines", "Print the manifest's JSON Schema."),
    "graph": Deferred("runner.cli.pipelines",
                      "Draw a pipeline's DAG (Mermaid text; DOT, SVG or PNG with Graphviz)."),
    "run": Deferred("runner.cli.run", "Run a pipeline locally."),
    "trace": Deferred("runner.cli.traces",
                      "A run's spans as a tree, with durations (from its spans.jsonl)."),
    "report": Deferred("runner.cli.traces",
                       "One self-contained HTML page of a run: results, DAG, timeline, "
                       "steps, artifacts,\nerror."),  # rich help keeps the line break
    "runs": Deferred("runner.cli.runs", "Runs kept in the artifact store."),
    "artifacts": Deferred("runner.cli.runs", "Files of a run's checkpoints."),
    "submit": Deferred("runner.cli.kube",
                       "Run a pipeline as a Kubernetes Job (its pod runs `runner run`).", _K8S),
    "status": Deferred("runner.cli.kube", "A submitted run's state: phase, attempts, and why "
                       "it failed, in words.", _K8S),
    "logs": Deferred("runner.cli.kube", "The output of a submitted run's latest pod.", _K8S),
    "cancel": Deferred("runner.cli.kube", "Stop a submitted run: delete its Job, pods, "
                       "RayCluster and manifest.", _K8S),
    "schedule": Deferred("runner.cli.kube",
                         "Run a pipeline on a cron schedule (create or update a CronJob).",
                         _K8S),
    "unschedule": Deferred("runner.cli.kube", "Delete a schedule's CronJob (runs already "
                           "started go on).", _K8S),
}
"""Every command of ``runner``, in the order help lists them: the module whose
``register(app)`` adds it, imported only when the command is used (or its own help
shown), and what the root's help says of it (tests/unit/cli/test_lazy_commands.py
holds these equal to the commands' own help and panel)."""


def _build(module: str) -> Mapping[str, Any]:
    """The click commands ``module.register(app)`` adds, made as typer makes the root's."""
    commands = RunnerTyper()
    importlib.import_module(module).register(commands)
    return typer.main.get_group(commands).commands


def _listed(name: str, entry: Deferred) -> TyperCommand:
    """What the root's help lists for a command not built: its name, help and panel."""
    return TyperCommand(name, help=entry.help, rich_help_panel=entry.panel)


class _AppGroup(RunnerGroup):
    """The root group: a :class:`RunnerError` from any command (or from the global
    options) is said once and exits with its family's code, here, so that every way of
    invoking the app maps it (the console script, ``python -m runner.cli``, click's
    test runner). Its commands are built when used (:data:`COMMANDS`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = LazyCommands(COMMANDS, build=_build, built=self.commands)
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        commands = self.commands
        if self._listing and isinstance(commands, LazyCommands):
            return commands.listed(cmd_name, make=_listed)
        return commands.get(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The root's help, listing the commands without building them."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except RunnerError as exc:
            raise typer.Exit(say_error(exc)) from exc


app = RunnerTyper(
    cls=_AppGroup,
    name="runner",
    help="Declarative pipeline runner for quant research.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class LogFormat(str, Enum):
    text = "text"
    json = "json"


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


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
    if level not in (*LEVELS, "CRITICAL"):
        raise UsageError(f"--log-level {log_level!r}: expected DEBUG, INFO, WARNING or ERROR"
                         + did_you_mean(level, LEVELS))
    configure_logging(log_format.value, level)
    set_log_format(log_format.value)



def _drop_current_folder() -> None:
    """Never import from the current folder because it is current (``python -m``
    puts it first): a planted ``scipy.py`` there, or a package under the default store
    ``data/artifacts``, must not run. Stage modules are found beside the manifest."""
    if sys.path and sys.path[0] in ("", str(Path.cwd())):
        del sys.path[0]


GLOBAL_OPTIONS = ("--log-format", "--log-level")
"""The options of ``runner`` itself (each takes a value), accepted after the command too."""


def _command_index(args: list[str]) -> int | None:
    """Where the command is in ``args`` (the first word that is no global option's)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return None
        if arg in GLOBAL_OPTIONS:
            i += 2
            continue
        if not arg.startswith("-"):
            return i
        i += 1
    return None


def globals_first(args: list[str]) -> list[str]:
    """``args`` with the global options given after the command moved before it:
    ``runner run demo --log-format json`` is ``runner --log-format json run demo``
    (click only knows a group's options before its command). Nothing after ``--``
    moves, nor the value of an option that takes one."""
    command = _command_index(args)
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
    """Run the app; every error that reaches here is said once, with its exit code."""
    try:
        app()  # usage errors exit 2 and --help exits 0 inside, as SystemExit
    except SystemExit as exc:
        if was_signalled() and isinstance(exc.code, int):
            exit_after_signal(exc.code)
        raise
    except KeyboardInterrupt as exc:
        note_error("aborted")
        err.print("aborted")
        sys.exit(exit_code_of(exc))
    except RunnerError as exc:
        sys.exit(say_error(exc))
    except Exception as exc:
        if os.environ.get("RUNNER_DEBUG"):
            raise
        note_error(f"internal error: {type(exc).__name__}: {exc}")
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
                  "  this is a bug in runner; rerun with RUNNER_DEBUG=1 for the traceback")
        sys.exit(INTERNAL_ERROR)
