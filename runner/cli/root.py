"""The ``runner`` typer app: its global options, the table of its commands (built when
used, :mod:`.lazy`) and its root group, where a :class:`RunnerError` from any command
becomes its exit code. The entry point is :mod:`.app`'s ``main``, which imports this
module only when a command needs typer.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from enum import Enum
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from runner.cli import coerce
from runner.cli.format import RunnerGroup, RunnerTyper
from runner.cli.help import defer_rich_extras
from runner.cli.lazy import Deferred, LazyCommands
from runner.cli.output import out, say_error, set_log_format
from runner.cli.startup_gc import ENDS_OWN_START_UP, resume
from runner.errors import RunnerError, UsageError
from runner.telemetry.logs import configure_logging
from runner.words import did_you_mean

__all__ = ["COMMANDS", "LEVELS", "LogFormat", "app"]

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
                       "A run on one self-contained HTML page: results, DAG, timeline, "
                       "steps, files, error."),
    "runs": Deferred("runner.cli.runs", "Runs kept in the artifact store."),
    "artifacts": Deferred("runner.cli.runs", "Files of a run's checkpoints."),
    "cache": Deferred("runner.cli.step_cache",
                      "The step cache kept in the artifact store (runner run --cache)."),
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

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if name not in ENDS_OWN_START_UP:
            resume()  # the command's own work: with the collector (:mod:`.startup_gc`)
        return name, command, rest

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
