"""``--json``: stdout holds the one JSON object, whatever the stages print.

While a run goes, file descriptor 1 points at stderr, so what a stage writes
(``print``, a C library, a subprocess it starts) and what the worker processes
and Ray daemons started during the run inherit all land on stderr; the JSON
object goes to the real stdout, kept aside.

    with stage_output_to_stderr(as_json):
        result = runner.run()         # a print() here goes to stderr
    print_json(doc)                   # stdout: this object only

A ``--json`` command that fails before printing its object prints
``{"error": "...", "exit_code": N}`` instead (:func:`print_json_error`, called once
by the entry point), the human line still on stderr: a script reading stdout always
gets one JSON object.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["note_error", "print_json", "print_json_error", "stage_output_to_stderr",
           "wants_json"]

_REAL: list[IO[str]] = []
"""The stdout the JSON object goes to while a run's output is sent to stderr."""
_STATE: dict[str, Any] = {"printed": False, "error": None}
"""Whether a JSON document went to stdout, and the last error said on stderr."""


@contextlib.contextmanager
def stage_output_to_stderr(enabled: bool = True) -> Iterator[None]:
    """Send everything written to stdout to stderr (descriptor and ``sys.stdout``)."""
    if not enabled:
        yield
        return
    stdout = sys.stdout
    with contextlib.suppress(Exception):
        stdout.flush()
    try:
        fd = stdout.fileno()
        target = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file: an in-process caller
        _REAL.append(stdout)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                yield
        finally:
            _REAL.pop()
        return
    saved = os.dup(fd)
    os.dup2(target, fd)
    real = os.fdopen(saved, "w", encoding=getattr(stdout, "encoding", None) or "utf-8",
                     closefd=True)
    _REAL.append(real)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()  # a stage's buffered print belongs on stderr too
        _REAL.pop()
        real.flush()
        os.dup2(saved, fd)
        real.close()


def print_json(doc: Any) -> None:
    """Write ``doc`` as one JSON line on the real stdout, even during a run."""
    stream = _REAL[-1] if _REAL else sys.stdout
    stream.write(json.dumps(doc) + "\n")
    stream.flush()
    _STATE["printed"] = True


def note_error(message: str) -> None:
    """Remember the error a command is about to exit with (its human line)."""
    _STATE["error"] = message


def wants_json(args: list[str]) -> bool:
    """Whether the command line asks for ``--json`` (an option, not after ``--``)."""
    return "--json" in (args[:args.index("--")] if "--" in args else args)


def print_json_error(exit_code: int, *, fallback: str = "error") -> None:
    """``{"error": ..., "exit_code": ...}`` on stdout, unless a JSON document is there
    already (a failed run's own, which says the same and more)."""
    if _STATE["printed"]:
        return
    print_json({"error": _STATE["error"] or fallback, "exit_code": exit_code})
