"""The executor interface: how the branches of a parallel group run.

An executor only decides *where* branches run; the step loop, merging and the
run's failure handling are the engine's, identical on every executor. Each
branch runs with :func:`runner.orchestration.execute.execute_branch` wherever it
lands (it forks the group's context there); what an executor must handle itself
is its own failure modes: a worker that dies becomes its branch's failed outcome.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator

from runner.orchestration.tasks import BranchOutcome, CancelFlag, GroupTask

__all__ = ["Executor"]


class Executor(ABC):
    """Runs the branches of a parallel group and yields outcomes as they complete."""

    name: str = "executor"

    def start(self) -> None:
        """Acquire resources (pools, clusters); may return before they are ready."""

    def shutdown(self) -> None:
        """Release everything :meth:`start` acquired."""

    def release(self) -> None:
        """The run will dispatch no more branches (its last group's branches all
        succeeded): let go early of what only branches need, while the steps after
        the group run. :meth:`shutdown` still follows at the run's end."""

    def abort(self) -> None:
        """Stop now, from any thread, never waiting: queued branches never start and
        workers that can be stopped are (the process is about to exit)."""

    def new_cancel_flag(self) -> CancelFlag:
        """A flag visible to running branches that tells them to stop scheduling steps."""
        return threading.Event()

    @abstractmethod
    def run_branches(self, group: GroupTask) -> Iterator[BranchOutcome]:
        """Run every task of ``group``, yielding one outcome per task in completion order.

        The tasks share the group's context: each branch runs on a fork of it. Once
        ``group.cancel`` is set, branches not yet started must not start; branches in
        flight finish (they stop at their next step boundary). ``group.hooks`` are the
        driver's: a branch run in this process hears them live (pass them to
        ``execute_branch``); for branches in other processes see :mod:`.remote`.
        """

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
