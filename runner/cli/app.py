"""The ``runner`` command's entry point: the one place every error becomes its exit code.

Exit codes come from :data:`runner.errors.EXIT_CODES`: 0 success; 1 the run failed
(a stage raised, branches collided, its Job failed); 2 invalid manifest, usage or
storage; 4 the infrastructure (Ray, the worker pool); 128 + N a run a signal
stopped; 3 a bug in runner. Errors are one clear line on stderr, never a traceback;
``--json`` prints exactly one JSON object on stdout.

The typer app (:mod:`.root`: global options, commands) is imported only when the
command needs it: ``runner list`` and ``runner validate`` whose outcome the check
cache kept answer without it (:mod:`.quick`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from runner.cli.json_stdout import note_error, print_json_error, wants_json
from runner.cli.markup import escape
from runner.cli.output import err, exit_after_signal, say_error, was_signalled
from runner.cli.quick import answer_from_kept_check
from runner.cli.startup_gc import pause, resume
from runner.errors import INTERNAL_ERROR, RunnerError, exit_code_of
from runner.telemetry.logs import configure_logging

__all__ = ["GLOBAL_OPTIONS", "globals_first", "main"]


def __getattr__(name: str) -> Any:
    """``app`` and ``COMMANDS`` are :mod:`.root`'s (imported on first use)."""
    if name in ("app", "COMMANDS"):
        from runner.cli import root

        return getattr(root, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    one line; ``RUNNER_DEBUG=1`` shows the traceback. The garbage collector is off
    while the command starts (:mod:`.startup_gc`) and on again when it ends.
    """
    pause()
    try:
        _entry()
    finally:
        resume(freeze=False)


def _entry() -> None:
    configure_logging("text", logging.WARNING)
    _drop_current_folder()
    sys.argv[1:] = globals_first(sys.argv[1:])  # --log-format after the command works too
    as_json = wants_json(sys.argv[1:])
    if answer_from_kept_check(sys.argv[1:]):
        return
    try:
        _main()
    except SystemExit as exc:
        if as_json and isinstance(exc.code, int) and exc.code != 0:
            print_json_error(exc.code)  # stdout: a JSON object, whatever went wrong
        raise


def _main() -> None:
    """Run the app; every error that reaches here is said once, with its exit code."""
    from runner.cli.root import app

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
