"""What an executor whose branches run in other processes does on the driver.

Such a branch cannot call the driver's hooks as its steps run. So before the
branches leave, each driver hook may give a picklable *branch hook* that travels
with the task (:meth:`RunHook.branch_hook`) and the driver's hooks hear that the
branch was queued; while the workers run, the driver imports what its next steps
need (from the start of the group, or, with :attr:`RemoteExecutor.defer_warming`,
when :meth:`~RemoteExecutor.dispatch` says so); when a branch returns, the
driver's hooks hear its steps (``on_step_end``) and its branch hooks' payloads.
:class:`RemoteExecutor` does all of it around :meth:`RemoteExecutor.dispatch`,
which only sends tasks and yields outcomes; the processes and Ray executors are
ones.
"""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import ClassVar

from runner.orchestration.executors.base import Executor
from runner.orchestration.hooks import RunHook, call_quietly
from runner.orchestration.records import RunInfo
from runner.orchestration.tasks import BranchOutcome, BranchTask, CancelFlag, GroupTask
from runner.orchestration.warm import warm_in_background

__all__ = ["RemoteExecutor", "branch_hooks"]

log = logging.getLogger("runner")


def branch_hooks(hooks: Sequence[RunHook], task: BranchTask) -> tuple[tuple[int, RunHook], ...]:
    """The branch hooks the driver's ``hooks`` give ``task``'s branch, each with its
    driver hook's index; a hook that fails to make one is logged and left out."""
    out = []
    for index, hook in enumerate(hooks):
        try:
            made = hook.branch_hook(task.run, task.branch)
        except Exception as exc:
            log.error("hook %s.branch_hook failed: %s: %s", type(hook).__name__,
                      type(exc).__name__, exc)
            continue
        if made is not None:
            out.append((index, made))
    return tuple(out)


def report(hooks: Sequence[RunHook], run: RunInfo, task: BranchTask,
           outcome: BranchOutcome) -> None:
    """Tell the driver's hooks what a returned branch did: its branch hooks' payloads,
    then each of its steps."""
    for index, payload in outcome.payloads:
        call_quietly([hooks[index]], run, "on_branch_payload", task.branch, payload)
    for record in outcome.records:
        call_quietly(hooks, run, "on_step_end", record, None)


class RemoteExecutor(Executor):
    """An executor whose branches run in other processes: implement :meth:`dispatch`."""

    defer_warming: ClassVar[bool] = False
    """Start the driver's imports when :meth:`dispatch` calls :meth:`start_warming`, not
    before it: a dispatch that first waits for a connection made in this process (Ray)
    would share the interpreter lock with those imports and send its branches later."""

    _to_warm: tuple[str, ...] = ()
    _warming: threading.Thread | None = None
    _last = False
    """The group being dispatched is the run's last (:attr:`GroupTask.last`): outcomes
    must not keep anything :meth:`release` lets go of."""

    def run_branches(self, group: GroupTask) -> Iterator[BranchOutcome]:
        if not group.tasks:
            return
        run = group.tasks[0].run
        tasks = [replace(task, hooks=branch_hooks(group.hooks, task)) for task in group.tasks]
        for task in tasks:  # the driver hears no branch start: say they were sent
            call_quietly(group.hooks, run, "on_branch_queued", task.branch)
        self._to_warm = tuple(group.warm)
        self._warming = None
        self._last = group.last
        if not self.defer_warming:
            self.start_warming()
        by_index = {task.branch.index: task for task in tasks}  # a part of the group's
        succeeded = 0  # branches when the others came from the step cache
        try:
            for outcome in self.dispatch(tasks, group.cancel):
                succeeded += outcome.failure is None and not outcome.cancelled
                report(group.hooks, run, by_index[outcome.index], outcome)
                yield outcome
        finally:
            self._to_warm = ()
            self._last = False
            if self._warming is not None:  # the merge and the next steps may import the same
                self._warming.join()
                self._warming = None
        if group.last and succeeded == len(tasks):
            self.release()

    def start_warming(self) -> None:
        """Start importing what the steps after the group need, on a thread of the driver
        (once per group; later calls do nothing). The dispatch of an executor with
        :attr:`defer_warming` calls it once its branches are on their way."""
        modules, self._to_warm = self._to_warm, ()
        if modules:
            self._warming = warm_in_background(modules)

    @abstractmethod
    def dispatch(self, tasks: Sequence[BranchTask], cancel: CancelFlag,
                 ) -> Iterator[BranchOutcome]:
        """Send every task to a worker (each runs ``execute_branch`` there) and yield the
        outcomes in completion order; a worker that could not run its task yields that
        branch's failure (:func:`~runner.orchestration.tasks.branch_lost`).

        Once ``cancel`` is set, tasks not yet started must not start."""
