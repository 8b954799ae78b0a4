"""The names the forkserver and its preload share, in a module that imports nothing.

:mod:`.preload_plan` runs inside the forkserver that :mod:`.forkserver` starts;
both read these, so neither imports the other (no import cycle).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

__all__ = ["ENGINE_PRELOAD", "PLAN_ENV", "RESTORE_ENV", "put_back",
           "restore_environment", "spawn_environment"]

PLAN_ENV = "RUNNER_FORKSERVER_PLAN"
"""Set for the forkserver only: the plan whose modules it imports (JSON)."""

ENGINE_PRELOAD = ("runner.orchestration.execute", "pandas")
"""What every worker needs to receive a branch: the step loop and the context's frames."""

RESTORE_ENV = "RUNNER_FORKSERVER_RESTORE"
"""Set for a spawned forkserver only: the variables :func:`spawn_environment` replaced,
with the driver's values (JSON; null: unset), for it to put back."""

_PATH_VARIABLES = ("PYTHONPATH", "PYTHONSAFEPATH")


def spawn_environment(extra: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Set ``os.environ`` for a forkserver about to be spawned: ``extra``, and the
    driver's ``sys.path`` as the forkserver's. CPython 3.11's forkserver ignores the
    ``sys.path`` multiprocessing hands it and puts its current folder first: in a
    folder that holds another copy of a package the driver imports from elsewhere (a
    checkout beside the installed one), the workers would run that copy's code, not the
    driver's. So ``PYTHONSAFEPATH=1`` (no current folder first) and ``PYTHONPATH`` the
    driver's ``sys.path``, in order. Returns what was replaced: hand it to
    :func:`put_back` once the forkserver runs; the forkserver puts the driver's values
    back itself (:func:`restore_environment`) before it forks a worker."""
    extra = extra or {}
    saved = {name: os.environ.get(name) for name in (*extra, *_PATH_VARIABLES, RESTORE_ENV)}
    here = os.getcwd()  # noqa: PTH109 - stdlib os only, imported at CLI entry
    path = [str(p) or here for p in sys.path]  # "": the current folder, as the driver meant
    os.environ.update(extra)
    os.environ[RESTORE_ENV] = json.dumps({n: saved[n] for n in _PATH_VARIABLES})
    os.environ["PYTHONSAFEPATH"] = "1"
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in path if os.pathsep not in p)
    return saved


def put_back(saved: Mapping[str, str | None]) -> None:
    """Undo :func:`spawn_environment` in the driver."""
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def restore_environment() -> None:
    """In a forkserver :func:`spawn_environment` started: the driver's values of the
    variables it replaced, so a stage's own subprocesses see the driver's environment
    (a no-op anywhere else)."""
    saved = os.environ.pop(RESTORE_ENV, None)
    if saved is None:
        return
    try:
        values = json.loads(saved)
    except ValueError:
        return
    put_back({k: v for k, v in values.items() if k in _PATH_VARIABLES})

