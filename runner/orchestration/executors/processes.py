"""Branches in worker processes: contexts are pickled across, true CPU parallelism.

Workers come from a ``forkserver`` that has already imported the engine, the
plan's stage modules and what its branches' stages declare they import, so a
branch starts in milliseconds and no thread state is inherited. The group's
context is pickled once for all its branches and handed to them through shared
memory (:mod:`.handoff`), and a branch sends back only the fields it changed
(:mod:`.shipping`). Each branch's
native thread pools are capped at its CPU share (:mod:`..native_threads`), and the
share a stage reads between its calls (``core_share``) grows as the group's other
branches finish: the workers read how many still run from shared memory. The
pool is started and warmed up on a background thread when the run begins, so its
start-up hides behind the sequential steps that precede the first parallel group;
the CLI starts the forkserver itself even earlier (:mod:`..forkserver`).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Any

from runner.errors import WorkerPoolError
from runner.orchestration.execute import execute_branch
from runner.orchestration.executors.handoff import Handoff, handed_off
from runner.orchestration.executors.remote import RemoteExecutor
from runner.orchestration.executors.shipping import restore_untouched, strip_untouched
from runner.orchestration.executors.threads import drain, thread_lost
from runner.orchestration.forkserver import ensure_forkserver, worker_preload
from runner.orchestration.native_threads import (
    available_cpus,
    branch_threads,
    native_thread_limit,
    sharing_cores,
)
from runner.orchestration.tasks import BranchOutcome, BranchTask, CancelFlag, branch_lost
from runner.orchestration.warm import module_folders
from runner.registry import add_module_folders

__all__ = ["ProcessesExecutor"]

_CANCEL: Any = None
_RUNNING: Any = None  # the driver's count of the group's branches still running


def _init_worker(cancel: Any, folders: Sequence[str] = (), running: Any = None) -> None:
    global _CANCEL, _RUNNING  # the pool's one way to hand a worker these
    _CANCEL, _RUNNING = cancel, running
    # the folders the driver found the stage modules in (beside the manifest): the
    # forkserver may have started before they were added to the driver's sys.path
    add_module_folders(folders, why="the driver's")
    # Ctrl-C reaches the whole process group: the driver alone decides (it lets the
    # branch finish, or kills its workers); a worker dying of it would break the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = mp.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent.sentinel,), daemon=True,
                         name="runner-orphan-guard").start()


def _exit_with_parent(sentinel: int) -> None:
    """A driver killed with SIGKILL cannot stop its workers: they stop themselves.

    Without this they would wait on the call queue forever, holding the dead
    driver's stdout open (a caller reading it through a pipe would hang).
    """
    mp_connection.wait([sentinel])
    os._exit(1)


def _run_in_worker(task: BranchTask, shipped: Handoff, executor_name: str,
                   threads: int) -> BranchOutcome:
    """Run a branch on a fork of the group's context (pickled once by the driver, for
    every branch: :mod:`.handoff`); send back only the fields it changed
    (:mod:`.shipping`)."""
    received = shipped.load()
    with native_thread_limit(threads), sharing_cores(_share(task, threads)):
        # the branch runs on a fork of what it received
        outcome = execute_branch(replace(task, context=received), _CANCEL,
                                 executor=executor_name)
    if outcome.context is not None and type(outcome.context) is type(received):
        outcome.context = strip_untouched(outcome.context, received)
    return outcome


def _share(task: BranchTask, threads: int) -> Callable[[], int]:
    """The branch's core share as it goes: a ``num_cpus`` request holds; else the
    worker's CPUs divided by the group's branches still running (the driver's count)."""
    running = _RUNNING
    if running is None or task.branch.resources.get("num_cpus"):
        return lambda: threads
    cpus = available_cpus()
    return lambda: max(1, cpus // max(1, running.value))


def _warm() -> int:
    return os.getpid()


def _lost(task: BranchTask, exc: BaseException) -> BranchOutcome:
    """A branch the pool could not run: a dead worker breaks the whole pool."""
    if isinstance(exc, BrokenProcessPool):
        return branch_lost(task, exc, "a worker process died (killed, out of memory or "
                                      f"crashed) while this group ran; every branch of it "
                                      f"stopped: {exc}")
    return thread_lost(task, exc)


class ProcessesExecutor(RemoteExecutor):
    """Runs branches on a pool of worker processes owned by the run."""

    name = "processes"

    def __init__(self, max_workers: int | None = None, *, start_method: str = "forkserver",
                 preload: Sequence[str] = ()) -> None:
        self.max_workers = max_workers or os.cpu_count() or 1
        self._mp = mp.get_context(start_method)
        if start_method == "forkserver":  # no effect on a forkserver already running
            self._mp.set_forkserver_preload(worker_preload(preload))
        self._folders = module_folders(preload)
        self._cancel = self._mp.Event()
        self._running = self._mp.RawValue("i", 0)  # read by the workers, set here
        self._pool: ProcessPoolExecutor | None = None
        self._starting: threading.Thread | None = None
        self._start_error: BaseException | None = None

    def new_cancel_flag(self) -> CancelFlag:
        self._cancel.clear()
        return self._cancel

    def start(self) -> None:
        """Start the pool in the background; :meth:`run_branches` waits for it."""
        if self._pool is None and self._starting is None:
            self._starting = threading.Thread(target=self._start_pool, name="runner-pool",
                                              daemon=True)
            self._starting.start()

    def _start_pool(self) -> None:
        try:
            if self._mp.get_start_method() == "forkserver":
                ensure_forkserver()  # with the driver's sys.path, not its current folder
            pool = ProcessPoolExecutor(
                self.max_workers, mp_context=self._mp, initializer=_init_worker,
                initargs=(self._cancel, self._folders, self._running),
            )
            warm = [pool.submit(_warm) for _ in range(self.max_workers)]
            self._pool = pool
            for fut in warm:
                fut.result()
        except BaseException as exc:  # reported by the first run_branches
            self._start_error = exc

    def _ready(self) -> ProcessPoolExecutor:
        self.start()
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        if self._start_error is not None:
            error, self._start_error = self._start_error, None
            raise WorkerPoolError(
                f"the worker pool ({self.max_workers} {self._mp.get_start_method()} "
                f"processes) did not start: {type(error).__name__}: {error}",
                workers=self.max_workers, start_method=self._mp.get_start_method(),
            ) from error
        assert self._pool is not None
        return self._pool

    def shutdown(self) -> None:
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def abort(self) -> None:
        """Kill the workers and drop queued branches: a worker may be running a stage
        that will not end in time, and idle ones wait for work that never comes."""
        pool = self._pool
        if pool is None:
            return
        processes = dict(getattr(pool, "_processes", None) or {})
        for process in processes.values():
            with contextlib.suppress(Exception):  # already gone
                process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def dispatch(self, tasks: Sequence[BranchTask], cancel: CancelFlag,
                 ) -> Iterator[BranchOutcome]:
        pool = self._ready()
        concurrent = min(len(tasks), self.max_workers)
        # every branch gets the same context (each forks it in its worker): pickled
        # once here, not once per branch, and read by the workers side by side
        with handed_off(tasks[0].context) as shipped:
            self._running.value = concurrent  # before any branch can read it
            futures: dict[Future[BranchOutcome], BranchTask] = {
                pool.submit(_run_in_worker, replace(t, context=None), shipped, self.name,
                            branch_threads(t.branch.resources, concurrent=concurrent)): t
                for t in tasks
            }
            del shipped  # the call queue holds it until the last branch is sent
            remaining = len(tasks)
            for outcome in drain(futures, cancel, lost=_lost):
                remaining -= 1  # its cores go to the branches still running
                self._running.value = max(1, min(remaining, self.max_workers))
                if outcome.context is not None:
                    outcome.context = restore_untouched(outcome.context, tasks[0].context)
                yield outcome
