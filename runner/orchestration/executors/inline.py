"""Branches one after another in this process: deterministic, the default."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from runner.orchestration.execute import BranchOutcome, BranchTask, CancelFlag, execute_branch
from runner.orchestration.executors.base import Executor
from runner.orchestration.hooks import RunHook

__all__ = ["InlineExecutor"]


class InlineExecutor(Executor):
    """Runs each branch in declaration order, on the calling thread."""

    name = "inline"

    def __init__(self, *, label: str | None = None) -> None:
        if label:
            self.name = label

    def run_branches(
        self, tasks: Sequence[BranchTask], cancel: CancelFlag, hooks: Sequence[RunHook]
    ) -> Iterator[BranchOutcome]:
        for task in tasks:
            if cancel.is_set():
                return
            yield execute_branch(task, cancel, hooks, self.name)
