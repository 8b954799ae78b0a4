"""Imported last by the forkserver (as a preload): it exits at once when the driver does.

The forkserver notices its driver is gone only when the driver's process has
ended, after the driver's own interpreter shutdown; its own shutdown then tears
down every module it preloaded (pandas, scikit-learn: about 0.4 s) while it
still holds the driver's stdout and stderr. A caller that reads them through a
pipe (``$(runner run ...)``, ``subprocess.run``, CI) waited for both shutdowns,
one after the other. Like the workers forked from it, which end with
``os._exit``, the forkserver has nothing to clean up: it flushes its standard
streams and ends without tearing down. Registered after the preloads' own
``atexit`` handlers, so it runs before them (they would run in no worker either).
Last before any worker is forked, it also gives a spawned forkserver back the
driver's environment (:func:`.forkserver_env.restore_environment`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys

from runner.orchestration.forkserver_env import restore_environment

__all__ = ["exit_quickly"]

_PID = os.getpid()


def exit_quickly() -> None:
    """End the forkserver now, status 0, its standard streams flushed; a no-op in any
    other process (a worker forked from the forkserver inherits the handler)."""
    if os.getpid() != _PID:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # closed, or None
            stream.flush()
    os._exit(0)


atexit.register(exit_quickly)
restore_environment()  # before any worker is forked from this forkserver
