"""``--json``: stdout holds the one JSON object, whatever the stages print.

While a run goes, file descriptor 1 points at stderr, so what a stage writes
(``print``, a C library, a subprocess it starts) and what the worker processes
and Ray daemons started during the run inherit all land on stderr; the JSON
object goes to the real stdout, kept aside.

    with stage_output_to_stderr(as_json):
        result = runner.run()         # a print() here goes to stderr
    print_json(doc)                   # stdout: this object only
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["print_json", "stage_output_to_stderr"]

_REAL: list[IO[str]] = []
"""The stdout the JSON object goes to while a run's output is sent to stderr."""


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
