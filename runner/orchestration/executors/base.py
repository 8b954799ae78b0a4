"""The executor interface: how the branches of a parallel group run.

An executor only decides *where* branches run; the step loop, forking rules,
merging and failure handling are the engine's, identical on every executor.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.orchestration.execute import BranchOutcome, BranchTask, CancelFlag
    from runner.orchestration.hooks import RunHook

__all__ = ["Executor"]


class Executor(ABC):
    """Runs the branches of a parallel group and yields outcomes as they complete."""

    name: str = "executor"
    isolates: bool = False
    """True when contexts cross a process boundary, so the engine need not fork them."""
    live_hooks: bool = True
    """True when step hooks are called as steps run (in this process)."""

    def start(self) -> None:
        """Acquire resources (pools, clusters); may return before they are ready."""

    def shutdown(self) -> None:
        """Release everything :meth:`start` acquired."""

    def abort(self) -> None:
        """Stop now, from any thread, never waiting: queued branches never start and
        workers that can be stopped are (the process is about to exit)."""

    def new_cancel_flag(self) -> CancelFlag:
        """A flag visible to running branches that tells them to stop scheduling steps."""
        return threading.Event()

    @abstractmethod
    def run_branches(
        self, tasks: Sequence[BranchTask], cancel: CancelFlag, hooks: Sequence[RunHook]
    ) -> Iterator[BranchOutcome]:
        """Run every task, yielding outcomes in completion order.

        Once ``cancel`` is set, branches not yet started must not start; branches
        in flight finish (they stop at their next step boundary).
        """

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
