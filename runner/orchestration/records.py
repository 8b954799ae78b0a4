"""What a run leaves behind in memory: step records and the run's result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Resume", "RunInfo", "RunResult", "StepRecord"]

Status = Literal["succeeded", "failed", "cached"]
"""``cached``: the step's outputs were restored from the step cache; its code did not run."""
RunStatus = Literal["succeeded", "failed"]
Kind = Literal["stage", "adapter", "merge"]


@dataclass(slots=True)
class StepRecord:
    """One executed stage, adapter or merge."""

    name: str
    path: str
    status: Status
    start: float
    end: float
    executor: str
    pid: int
    kind: Kind = "stage"
    error: str | None = None
    node: str | None = None
    branch: str | None = None
    """The enclosing branch's path; None for the main line of steps."""
    traceback: str | None = None
    """The formatted exception of a failed step (for spans; not in ``to_dict``)."""
    cache_key: str | None = None
    """The step-cache key of a cached step, or of a step run and kept in the cache."""
    restored: Mapping[str, Mapping[str, Any]] | None = None
    """A cached step's fields set from stored objects: each object as a checkpoint
    names it (:class:`~runner.orchestration.memo.Hit`). Not in :meth:`to_dict`."""

    @property
    def done(self) -> bool:
        """The step completed: it ran and succeeded, or its outputs came from the cache."""
        return self.status in ("succeeded", "cached")

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "kind": self.kind,
            "status": self.status,
            "start": self.start,
            "end": self.end,
            "duration_s": round(self.duration, 6),
            "executor": self.executor,
            "pid": self.pid,
            "node": self.node,
            "branch": self.branch,
            "error": self.error,
            "cache_key": self.cache_key,
        }


@dataclass(frozen=True)
class Resume:
    """Where a resumed run starts: the last checkpoint and the steps already done."""

    context: Any
    completed: frozenset[str]
    finished: bool = False
    """The run already succeeded: nothing runs again (a retried pod exits 0)."""
    attempt: int = 2
    """The attempt this resume makes (the run's first attempt is 1)."""
    checkpoint: str | None = None
    """The checkpoint folder it continues from (``steps/NNN-name``; None: from the start)."""


@dataclass(frozen=True)
class RunInfo:
    """Who a run is, for hooks: ids, pipeline and executor."""

    run_id: str
    trace_id: str
    pipeline: str
    executor: str
    parent_span_id: str | None = None
    """The span a run started with ``TRACEPARENT`` belongs under (16 hex digits)."""


@dataclass
class RunResult:
    """The final context of a successful run and a record per executed step."""

    run_id: str
    trace_id: str
    pipeline: str
    context: Any
    records: tuple[StepRecord, ...]
    start: float
    end: float
    executor: str
    status: RunStatus = "succeeded"
    already_complete: bool = False
    """A resumed run that had already succeeded: nothing ran, ``context`` is None."""
    report: dict[str, Any] | None = None
    """The final context's ``report()``, JSON-ready, once the results hook wrote it
    (the front door prints it without calling ``report()`` again)."""

    @property
    def duration(self) -> float:
        return self.end - self.start
