"""The executor contract's data: what the engine hands an executor and gets back.

A parallel group reaches its executor as a :class:`GroupTask` (one
:class:`BranchTask` per branch, the cancel flag, the driver's hooks); each branch
comes back as a :class:`BranchOutcome`. A step that raised travels as a picklable
:class:`StepFailure`; a step not started because the run is stopping raises
:class:`Cancelled`. This module imports nothing of the engine nor of any executor,
so both depend on it and never on each other's insides: an executor written outside
the package needs only these names and
:func:`runner.orchestration.execute.execute_branch`.
"""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from runner.orchestration.hooks import RunHook
    from runner.orchestration.plan import Branch
    from runner.orchestration.records import RunInfo, StepRecord

__all__ = ["BranchOutcome", "BranchTask", "CancelFlag", "Cancelled", "GroupTask", "RunBranches",
           "StepFailure", "branch_lost"]


class CancelFlag(Protocol):
    """Set once the run is failing or interrupted; branches read it between steps."""

    def is_set(self) -> bool: ...
    def set(self) -> None: ...


class Cancelled(Exception):
    """A step was not started because the run is failing elsewhere or was interrupted."""


class StepFailure(Exception):
    """A step raised (or a merge collided); carries what forensics need. Picklable."""

    def __init__(
        self,
        *,
        name: str,
        path: str,
        kind: str,
        exc_type: str,
        message: str,
        tb: str,
        received: Any,
        original: BaseException | None,
        pid: int,
        where: str = "",
        user_tb: str = "",
        store: bool = False,
    ) -> None:
        super().__init__(f"{name} at {path}: {exc_type}: {message}")
        self.name, self.path, self.kind = name, path, kind
        self.exc_type, self.message, self.tb = exc_type, message, tb
        self.received, self.original, self.pid = received, original, pid
        self.where, self.user_tb = where, user_tb
        """The user's last frame and short traceback, made where the stage raised (the
        driver of a Ray run may not have the worker's files): see runner.tracebacks."""
        self.store = store
        """The store failed the step (its step-cache entry could not be read or does not
        verify), not the step's code: the run ends with ``original``, the store's error."""

    def __reduce__(self) -> tuple[Any, ...]:
        original = self.original
        try:
            pickle.dumps(original)
        except Exception:
            original = None
        state = {"name": self.name, "path": self.path, "kind": self.kind,
                 "exc_type": self.exc_type, "message": self.message, "tb": self.tb,
                 "received": self.received, "original": original, "pid": self.pid,
                 "where": self.where, "user_tb": self.user_tb, "store": self.store}
        return (_rebuild_failure, (state,))


def _rebuild_failure(state: dict[str, Any]) -> StepFailure:
    return StepFailure(**state)


@dataclass
class BranchTask:
    """A branch bound to its input: everything a worker needs, picklable.

    ``context`` is the group's context, the same object for every branch: the branch
    runs on a fork of it wherever it runs (:func:`~runner.orchestration.execute.execute_branch`).
    """

    branch: Branch
    context: Any
    run: RunInfo
    snapshots: bool = True
    hooks: tuple[tuple[int, RunHook], ...] = ()
    """Branch hooks for a worker process, each with the index of the driver hook
    that made it (see :meth:`RunHook.branch_hook`); set by an executor whose
    branches run in other processes, empty otherwise."""
    cache: Any = None
    """The run's step cache (a :class:`~runner.orchestration.memo.StepMemo`), which the
    branch's steps consult wherever it runs; None: nothing is cached."""


@dataclass
class BranchOutcome:
    """What a branch returned: its context, or the failure, and its step records."""

    index: int
    context: Any = None
    failure: StepFailure | None = None
    cancelled: bool = False
    records: list[StepRecord] = field(default_factory=list)
    pid: int = 0
    node: str | None = None
    payloads: list[tuple[int, Any]] = field(default_factory=list)
    """What each branch hook sent back, with its driver hook's index."""


@dataclass(frozen=True)
class GroupTask:
    """One parallel group handed to an executor."""

    tasks: Sequence[BranchTask]
    cancel: CancelFlag
    hooks: Sequence[RunHook] = ()
    """The driver's hooks, in the driver's process: an executor that runs branches here
    lets them hear the steps live; one that runs them elsewhere ships branch hooks and
    reports the steps when each branch returns (:mod:`.executors.remote`)."""
    warm: Sequence[str] = ()
    """Modules the driver's steps after this group import: an executor that leaves the
    driver idle may import them meanwhile."""
    last: bool = False
    """No group follows on the driver's line of steps: once every branch of this one has
    succeeded, an executor may let go of what only branches need (see
    :meth:`~runner.orchestration.executors.base.Executor.release`)."""


RunBranches = Callable[[GroupTask], Iterator[BranchOutcome]]
"""What the step loop calls to run a group's branches: an executor's ``run_branches``
on the driver, :func:`~runner.orchestration.execute.run_inline` inside a branch."""


def branch_lost(task: BranchTask, exc: BaseException, message: str) -> BranchOutcome:
    """The outcome of a branch its worker could not run at all (it died, or could not
    unpickle the task): ``message`` says what happened, in the executor's words."""
    failure = StepFailure(
        name=task.branch.label, path=task.branch.path, kind="branch",
        exc_type=type(exc).__name__, message=message,
        tb="".join(traceback.format_exception(exc)), received=task.context, original=None,
        pid=0,
    )
    return BranchOutcome(task.branch.index, failure=failure)
