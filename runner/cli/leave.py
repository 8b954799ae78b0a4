"""Leaving the process once the command is done, without the interpreter's teardown.

When ``runner`` is done, Python would still finalize the interpreter: clear every
module (pandas, pyarrow, the OpenTelemetry SDK...), run a last collection and free
what they hold, about 25 ms for a run, which then has nothing left to do. The
console script (:func:`console`) does what that shutdown does that matters, in the
same order, then ends the process: it waits for the threads that are not daemons
(a run's checkpoint writers have finished by then), runs the exit handlers (the
span exporters' flush, logging's, the worker pool's, Ray's disconnection, temporary
folders' finalizers), flushes standard output and error, and exits with the code.
In-process callers of :func:`runner.cli.app.main` (tests, notebooks) keep the normal
exit: only the console script and ``python -m runner.cli`` leave this way.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading

__all__ = ["console", "exit_code", "leave"]


def exit_code(code: object) -> int:
    """The process's exit status for ``SystemExit(code)``, as the interpreter gives it
    (None is 0, an integer itself, anything else is written to stderr and is 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):  # a closed stderr: the status still says it
        sys.stderr.write(f"{code}\n")
    return 1


def leave(code: int) -> None:
    """End the process with ``code`` after the parts of shutdown that matter."""
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what Py_Finalize runs first; then only teardown is left
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe (runner ... | head)
            stream.flush()
    os._exit(code)


def console() -> None:
    """The ``runner`` console script: :func:`runner.cli.app.main`, then :func:`leave`."""
    from runner.cli.app import main

    try:
        main()
    except SystemExit as exc:
        leave(exit_code(exc.code))
    leave(0)
