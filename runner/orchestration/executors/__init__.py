"""Executors: where the branches of parallel groups run."""

from __future__ import annotations

import os
from collections.abc import Sequence

from runner.errors import UsageError
from runner.orchestration.executors.base import Executor
from runner.orchestration.executors.inline import InlineExecutor
from runner.orchestration.executors.processes import ProcessesExecutor
from runner.orchestration.executors.threads import ThreadsExecutor

__all__ = [
    "EXECUTORS",
    "PARALLEL_ENV",
    "Executor",
    "InlineExecutor",
    "ProcessesExecutor",
    "ThreadsExecutor",
    "make_executor",
]

EXECUTORS = ("inline", "threads", "processes", "ray")
PARALLEL_ENV = "TV_ORCH_PARALLEL"
PARALLEL_DEFAULT = "processes"


def make_executor(spec: str | Executor | None = None, *, max_workers: int | None = None,
                  preload: Sequence[str] = ()) -> Executor:
    """An executor by name; with none given, ``TV_ORCH_PARALLEL=1`` picks the parallel one."""
    if isinstance(spec, Executor):
        return spec
    if spec is None:
        flag = os.environ.get(PARALLEL_ENV, "").strip().lower()
        spec = PARALLEL_DEFAULT if flag in ("1", "true", "yes", "on") else "inline"
    if spec == "inline":
        return InlineExecutor()
    if spec == "threads":
        return ThreadsExecutor(max_workers)
    if spec == "processes":
        return ProcessesExecutor(max_workers, preload=preload)
    if spec == "ray":
        raise UsageError("executor 'ray' is not available in this version; "
                         "use 'processes' for parallel branches")
    raise UsageError(f"unknown executor {spec!r}: use one of {', '.join(EXECUTORS)}")
