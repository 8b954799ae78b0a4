"""Branches on a thread pool: for stages that release the GIL (NumPy, pandas, I/O).

While a group runs, BLAS (process-wide) is capped at the largest branch share
and each branch thread's OpenMP at its own, which is also the share a stage on it
reads (``core_share``; see :mod:`..native_threads`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from runner.orchestration.execute import execute_branch
from runner.orchestration.executors.base import Executor
from runner.orchestration.hooks import RunHook
from runner.orchestration.native_threads import (
    blas_thread_limit,
    branch_threads,
    openmp_thread_limit,
    sharing_cores,
)
from runner.orchestration.tasks import (
    BranchOutcome,
    BranchTask,
    CancelFlag,
    GroupTask,
    branch_lost,
)
from runner.orchestration.warm import declared_imports, import_modules

__all__ = ["Lost", "ThreadsExecutor", "drain", "thread_lost"]


Lost = Callable[[BranchTask, BaseException], BranchOutcome]
"""Turns a branch whose future raised into its failed outcome, in the executor's words."""


def thread_lost(task: BranchTask, exc: BaseException) -> BranchOutcome:
    """A branch thread that raised outside any step (the engine's own error)."""
    return branch_lost(task, exc, "the worker running this branch failed: "
                                  f"{type(exc).__name__}: {exc}")


def drain(
    futures: dict[Future[BranchOutcome], BranchTask], cancel: CancelFlag, *, lost: Lost
) -> Iterator[BranchOutcome]:
    """Yield outcomes as futures complete; once cancelled, drop the ones not started.

    A future that raised (the worker died, the task could not be pickled) becomes
    the failure of its branch through ``lost``, so it fails the run like a stage would.
    """
    pending = set(futures)
    while pending:
        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
        for fut in finished:
            if fut.cancelled():
                continue
            exc = fut.exception()
            if exc is not None:
                yield lost(futures[fut], exc)
                continue
            yield fut.result()
        if cancel.is_set():
            for fut in pending:
                fut.cancel()
            pending = {f for f in pending if not f.cancelled()}


class ThreadsExecutor(Executor):
    """Runs branches concurrently on a pool of threads owned by the run."""

    name = "threads"

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="runner-branch")

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def abort(self) -> None:
        pool = self._pool
        if pool is not None:  # running threads cannot be stopped: the process exits
            pool.shutdown(wait=False, cancel_futures=True)

    def run_branches(self, group: GroupTask) -> Iterator[BranchOutcome]:
        tasks, cancel, hooks = group.tasks, group.cancel, group.hooks
        self.start()
        assert self._pool is not None
        concurrent = min(len(tasks), self.max_workers)
        threads = [branch_threads(t.branch.resources, concurrent=concurrent) for t in tasks]
        # load the branches' OpenMP libraries now, so each branch's own limit holds
        import_modules(declared_imports(s for t in tasks for s in t.branch.steps))
        with blas_thread_limit(max(threads, default=1)):
            futures = {
                self._pool.submit(_run_limited, t, cancel, hooks, self.name, n): t
                for t, n in zip(tasks, threads, strict=True)
            }
            yield from drain(futures, cancel, lost=thread_lost)


def _run_limited(task: BranchTask, cancel: CancelFlag, hooks: Sequence[RunHook], name: str,
                 threads: int) -> BranchOutcome:
    # OpenMP's count is per calling thread; so is the share a stage asks for here
    with openmp_thread_limit(threads), sharing_cores(lambda: threads, process_wide=False):
        return execute_branch(task, cancel, hooks, executor=name)
