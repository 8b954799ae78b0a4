"""Executors: where the branches of parallel groups run.

To write one outside the package, subclass :class:`Executor` and run each
:class:`BranchTask` of the :class:`GroupTask` with :func:`execute_branch` (or
subclass :class:`RemoteExecutor` when branches run in other processes); the task
types come from :mod:`runner.orchestration.tasks` and are exported here too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runner._lazy import lazy_getattr
from runner.errors import UsageError
from runner.orchestration.execute import execute_branch
from runner.orchestration.executors.base import Executor
from runner.orchestration.executors.inline import InlineExecutor
from runner.orchestration.tasks import (
    BranchOutcome,
    BranchTask,
    CancelFlag,
    Cancelled,
    GroupTask,
    StepFailure,
    branch_lost,
)
from runner.retry import env_flag
from runner.words import did_you_mean

if TYPE_CHECKING:
    from runner.orchestration.executors.processes import ProcessesExecutor
    from runner.orchestration.executors.remote import RemoteExecutor
    from runner.orchestration.executors.threads import ThreadsExecutor

__all__ = [
    "EXECUTORS",
    "PARALLEL_ENV",
    "BranchOutcome",
    "BranchTask",
    "CancelFlag",
    "Cancelled",
    "Executor",
    "GroupTask",
    "InlineExecutor",
    "ProcessesExecutor",
    "RemoteExecutor",
    "StepFailure",
    "ThreadsExecutor",
    "branch_lost",
    "check_executor",
    "execute_branch",
    "make_executor",
]

EXECUTORS = ("inline", "threads", "processes", "ray")
PARALLEL_ENV = "TV_ORCH_PARALLEL"

log = logging.getLogger("runner")

__getattr__ = lazy_getattr(__name__, {  # an inline run imports none of them (multiprocessing)
    "ProcessesExecutor": "runner.orchestration.executors.processes",
    "RemoteExecutor": "runner.orchestration.executors.remote",
    "ThreadsExecutor": "runner.orchestration.executors.threads",
}, globals())


def parallel_default() -> str:
    """What ``TV_ORCH_PARALLEL=1`` selects: Ray (the seed's RayComputeEngine) when it is
    installed, worker processes otherwise."""
    import importlib.util

    if importlib.util.find_spec("ray") is not None:
        return "ray"
    log.warning("TV_ORCH_PARALLEL=1: Ray is not installed, so parallel branches run in "
                "worker processes (pip install 'runner[ray]' for Ray)")
    return "processes"


def check_executor(spec: str | Executor | None) -> None:
    """Refuse (:class:`UsageError`, exit 2) an executor that cannot start here: an
    unknown name, or Ray when it is not installed. Cheap (nothing is imported), so a
    front door calls it before a run takes its id and leaves a folder behind."""
    if spec is None or isinstance(spec, Executor):
        return
    if spec not in EXECUTORS:
        raise UsageError(f"unknown executor {spec!r}: use one of {', '.join(EXECUTORS)}")
    if spec == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            from runner.orchestration.executors.ray_connect import import_ray

            import_ray()  # raises the usage error that says how to install it


def make_executor(spec: str | Executor | None = None, *, max_workers: int | None = None,
                  preload: Sequence[str] = (), width: int = 0) -> Executor:
    """An executor by name; with none given, ``TV_ORCH_PARALLEL=1`` picks the parallel one.

    ``preload`` are the modules branches import (workers load them up front);
    ``width`` is how many branches the plan's widest group runs at once."""
    if isinstance(spec, Executor):
        return spec
    if spec is None:
        spec = parallel_default() if env_flag(PARALLEL_ENV) else "inline"
    if spec == "inline":
        return InlineExecutor()
    if spec == "threads":
        from runner.orchestration.executors.threads import ThreadsExecutor

        return ThreadsExecutor(max_workers)
    if spec == "processes":
        from runner.orchestration.executors.processes import ProcessesExecutor

        return ProcessesExecutor(max_workers, preload=preload)
    if spec == "ray":
        import importlib.util

        from runner.orchestration.executors.ray import RayComputeEngine
        from runner.orchestration.executors.ray_connect import import_ray

        if importlib.util.find_spec("ray") is None:
            import_ray()  # raises the usage error that says how to install it
        return RayComputeEngine(preload=preload, warm=width)
    raise UsageError(f"unknown executor {spec!r}: use one of {', '.join(EXECUTORS)}"
                     + did_you_mean(str(spec), EXECUTORS, ignore_case=True))
