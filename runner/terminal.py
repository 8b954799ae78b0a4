"""What the live progress board needs of the terminal it is drawn on; stdlib only, so
the command line can set it up before it imports anything else.

    pipe = relay_output()                 # worker processes write here (their stdout/stderr)
    restore = no_echoed_controls()        # no ^C echoed into the board; restore() after
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["is_stderr", "no_echoed_controls", "relay_output", "relay_pipe", "stdout_shares"]


def relay_output() -> int:
    """A pipe for what worker processes write (their stdout and stderr): a daemon
    thread prints it, line by line, through ``sys.stderr`` as it is then -- above the
    live board while it is drawn, where a worker writing to the terminal itself would
    tear it. Returns the write end, for the forkserver (the caller closes its copy)."""
    write, start = relay_pipe()
    start()
    return write


def relay_pipe() -> tuple[int, Callable[[], None]]:
    """:func:`relay_output` in two halves: the write end now, and what starts the
    thread that prints it, for a caller that forks (one thread) in between."""
    read, write = os.pipe()

    def start() -> None:
        threading.Thread(target=_relay, args=(read,), name="runner-relay",
                         daemon=True).start()

    return write, start


def _relay(read: int) -> None:
    pending = b""
    with os.fdopen(read, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            lines, newline, pending = (pending + chunk).rpartition(b"\n")
            if newline:
                _write(lines + newline)
    if pending:
        _write(pending + b"\n")


def _write(data: bytes) -> None:
    stream = sys.stderr
    stream.write(data.decode(errors="replace"))
    stream.flush()


def no_echoed_controls() -> Callable[[], None] | None:
    """Stop the terminal echoing Ctrl-C as ``^C`` (it lands inside the board and leaves a
    torn copy of it behind); returns what restores the setting, None when stdin is no
    terminal."""
    try:
        import termios
    except ImportError:  # not on a POSIX system
        return None
    try:
        fd = sys.stdin.fileno()
        before = termios.tcgetattr(fd)
        quiet = list(before)
        quiet[3] &= ~termios.ECHOCTL  # the local modes
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
    except (termios.error, AttributeError, OSError, ValueError):
        return None

    def restore() -> None:
        with contextlib.suppress(termios.error, OSError, ValueError):
            termios.tcsetattr(fd, termios.TCSANOW, before)

    return restore


def is_stderr(stream: Any) -> bool:
    """Whether ``stream`` writes to the process's standard error descriptor."""
    try:
        return bool(stream.fileno() == sys.__stderr__.fileno())  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):
        return False


def stdout_shares(*, interactive: bool) -> bool:
    """Whether stdout is the terminal the board is drawn on: then a stage's print goes
    above the board; redirected (``> file``), stdout is left alone."""
    try:
        return interactive and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False
