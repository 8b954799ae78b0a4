"""Where every command writes, and the one place an error is said.

Results go to stdout (``out``; ``wide`` for the runs' tables, not cut at 80 columns
when piped); status, progress and errors to stderr (``err``). A command raises a
:class:`~runner.errors.RunnerError` and the app's entry point hands it to
:func:`say_error`: one line (or, with ``--log-format json``, one JSON log line), and
the exit code of the error's family from :data:`runner.errors.EXIT_CODES`.

The consoles are made when first used, and rich imported then: a command that prints
nothing through them (``runner run P -q --json``, what a Job's pod or a script runs)
never imports it (about 20 ms of a fully cached run's 0.6 s).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any, cast

from runner.cli.json_stdout import note_error
from runner.cli.markup import escape
from runner.errors import exit_code_of

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["console_of", "err", "exit_after_signal", "is_structured", "out", "say_error",
           "set_log_format", "signalled", "was_signalled", "wide"]


class _LazyConsole:
    """A rich ``Console`` made with these arguments on first use; every attribute is
    the console's."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._console: Console | None = None

    def made(self) -> Console:
        if self._console is None:
            from rich.console import Console

            kwargs = {k: v() if callable(v) else v for k, v in self._kwargs.items()}
            self._console = Console(**kwargs)
        return self._console

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not made by __init__ (a copy): no console to ask
            raise AttributeError(name)
        return getattr(self.made(), name)


def console_of(console: Console) -> Console:
    """The rich console itself, for what takes one (a ``Live`` display)."""
    return console.made() if isinstance(console, _LazyConsole) else console


def _wide_width() -> int | None:
    return None if sys.stdout.isatty() else 200


err = cast("Console", _LazyConsole(stderr=True, highlight=False, soft_wrap=True))
out = cast("Console", _LazyConsole(highlight=False, soft_wrap=True))
wide = cast("Console", _LazyConsole(highlight=False, soft_wrap=True, width=_wide_width))

_STATE = {"format": "text", "signalled": False}
"""The ``--log-format`` given (with ``json`` stderr holds JSON log lines only: no
progress display), and whether a run stopped on a signal."""


def set_log_format(name: str) -> None:
    _STATE["format"] = name


def is_structured() -> bool:
    """Whether stderr takes JSON log lines only (``--log-format json``)."""
    return _STATE["format"] == "json"


def say_error(error: BaseException, *, label: str = "error") -> int:
    """Say ``error`` once, on stderr, and return its exit code: the line ``error: ...``
    (or a JSON log line with its type and code), remembered for ``--json``'s error
    object."""
    code = exit_code_of(error)
    note_error(str(error))
    if is_structured():
        logging.getLogger("runner").error("%s", error, extra={
            "event": "error", "error_type": type(error).__name__, "exit_code": code})
    else:
        err.print(f"[bold red]{label}:[/] {escape(str(error))}", markup=True, highlight=False)
    return code


def signalled() -> None:
    """A run stopped on a signal: the entry point then ends the process at once."""
    _STATE["signalled"] = True


def was_signalled() -> bool:
    return bool(_STATE["signalled"])


def exit_after_signal(code: int) -> None:
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
