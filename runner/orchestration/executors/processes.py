"""Branches in worker processes: contexts are pickled across, true CPU parallelism.

Workers come from a ``forkserver`` that has already imported the engine, so a
branch starts in milliseconds and no thread state is inherited. The pool is
started (and warmed up) when the run begins, behind the sequential steps that
precede the first parallel group.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from runner.orchestration.execute import BranchOutcome, BranchTask, CancelFlag, execute_branch
from runner.orchestration.executors.base import Executor
from runner.orchestration.executors.threads import drain
from runner.orchestration.hooks import RunHook

__all__ = ["ProcessesExecutor"]

_CANCEL: Any = None


def _init_worker(cancel: Any) -> None:
    global _CANCEL  # noqa: PLW0603 - the pool's one way to hand a worker its flag
    _CANCEL = cancel


def _run_in_worker(task: BranchTask, executor_name: str) -> BranchOutcome:
    return execute_branch(task, _CANCEL, (), executor_name)


def _warm() -> int:
    return os.getpid()


class ProcessesExecutor(Executor):
    """Runs branches on a pool of worker processes owned by the run."""

    name = "processes"
    isolates = True
    live_hooks = False

    def __init__(self, max_workers: int | None = None, *, start_method: str = "forkserver") -> None:
        self.max_workers = max_workers or os.cpu_count() or 1
        self._mp = mp.get_context(start_method)
        if start_method == "forkserver":
            self._mp.set_forkserver_preload(["runner.orchestration.execute", "pandas"])
        self._cancel = self._mp.Event()
        self._pool: ProcessPoolExecutor | None = None

    def new_cancel_flag(self) -> CancelFlag:
        self._cancel.clear()
        return self._cancel

    def start(self) -> None:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.max_workers, mp_context=self._mp, initializer=_init_worker,
                initargs=(self._cancel,),
            )
            for _ in range(self.max_workers):
                self._pool.submit(_warm)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def run_branches(
        self, tasks: Sequence[BranchTask], cancel: CancelFlag, hooks: Sequence[RunHook]
    ) -> Iterator[BranchOutcome]:
        self.start()
        assert self._pool is not None
        futures: dict[Future[BranchOutcome], BranchTask] = {
            self._pool.submit(_run_in_worker, t, self.name): t for t in tasks
        }
        yield from drain(futures, cancel)
