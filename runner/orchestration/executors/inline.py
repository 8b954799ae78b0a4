"""Branches one after another in this process: deterministic, the default."""

from __future__ import annotations

from collections.abc import Iterator

from runner.orchestration.execute import run_inline
from runner.orchestration.executors.base import Executor
from runner.orchestration.tasks import BranchOutcome, GroupTask

__all__ = ["InlineExecutor"]


class InlineExecutor(Executor):
    """Runs each branch in declaration order, on the calling thread."""

    name = "inline"

    def __init__(self, *, label: str | None = None) -> None:
        if label:
            self.name = label

    def run_branches(self, group: GroupTask) -> Iterator[BranchOutcome]:
        return run_inline(group, executor=self.name)
