"""Lifecycle hooks: how progress, checkpoints and tracing plug into the engine.

A hook overrides any of these no-op methods. Hooks run in the driver process;
with the ``threads`` executor they are called from worker threads, so a hook
must be thread-safe. Steps that ran in another process (``processes``, Ray)
are reported by ``on_step_end`` when their branch returns.

A hook that must see those steps as they run (tracing does) returns a picklable
*branch hook* from :meth:`RunHook.branch_hook`: it travels with the branch, hears
the branch's events where the branch runs, and what its :meth:`RunHook.payload`
returns comes back to the driver's :meth:`RunHook.on_branch_payload`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.orchestration.plan import Branch, ParallelGroup, PipelineStep, Plan, Step
    from runner.orchestration.records import RunInfo, RunResult, StepRecord

__all__ = ["RunHook", "call_quietly"]

log = logging.getLogger("runner")


class RunHook:
    """Base class for run lifecycle hooks; every method is optional."""

    def on_run_start(self, run: RunInfo, plan: Plan, context: Any) -> None:
        """The run is about to execute its first step."""

    def on_step_start(self, run: RunInfo, step: Step) -> None:
        """A stage or adapter is about to run in this process."""

    def on_step_end(self, run: RunInfo, record: StepRecord, context: Any | None) -> None:
        """A stage, adapter or merge finished; ``context`` is its output when local."""

    def on_pipeline_start(self, run: RunInfo, step: PipelineStep) -> None:
        """A nested pipeline is about to run its first step."""

    def on_pipeline_end(self, run: RunInfo, step: PipelineStep, context: Any | None) -> None:
        """A nested pipeline finished (``context`` is None when it failed)."""

    def on_group_start(self, run: RunInfo, group: ParallelGroup) -> None:
        """A parallel group is about to fork."""

    def on_branch_start(self, run: RunInfo, branch: Branch) -> None:
        """A branch starts, where it runs (a worker thread, or with a branch hook, a
        worker process)."""

    def on_branch_queued(self, run: RunInfo, branch: Branch) -> None:
        """On the driver: ``branch`` was handed to an executor whose branches run in other
        processes (``processes``, Ray), where ``on_branch_start`` is heard instead; it
        starts as soon as a worker is free. Lets a display show branches in flight."""

    def on_branch_end(self, run: RunInfo, branch: Branch, context: Any | None) -> None:
        """One branch finished (``context`` is None when it failed or was cancelled)."""

    def on_group_end(self, run: RunInfo, group: ParallelGroup, context: Any | None) -> None:
        """The group merged (``context`` is None when it failed)."""

    def branch_hook(self, run: RunInfo, branch: Branch) -> RunHook | None:
        """A picklable hook to run with ``branch`` in a worker process, or None.

        Asked only on executors whose branches run in another process. The branch
        hook hears ``on_branch_start``, the branch's step events and ``on_branch_end``
        in the worker; then its :meth:`payload` is sent back.
        """
        return None

    def payload(self) -> Any:
        """On a branch hook: what to send back to the driver when the branch ends."""
        return None

    def on_branch_payload(self, run: RunInfo, branch: Branch, payload: Any) -> None:
        """On the driver: the payload of the branch hook this hook gave ``branch``."""

    def on_run_end(
        self, run: RunInfo, result: RunResult | None, error: BaseException | None
    ) -> None:
        """The run ended, with a result or an error."""

    def on_run_abort(self, run: RunInfo, error: BaseException) -> None:
        """The process is about to exit at once (a second signal, or the grace period
        ran out while a stage still runs): record what you can, quickly.

        Called from another thread, maybe while a stage or ``on_run_end`` still runs
        on the main thread; it must be thread-safe and idempotent. ``on_run_end``
        may never come.
        """


def call_quietly(hooks: Iterable[RunHook], run: RunInfo, method: str, *args: Any) -> None:
    """Call ``method`` on every hook where a hook's error must not change the run's
    course (a failure is already on its way, or the call only informs): errors are
    logged, never raised."""
    for hook in hooks:
        try:
            getattr(hook, method)(run, *args)
        except Exception as exc:
            log.error("hook %s.%s failed: %s: %s", type(hook).__name__, method,
                      type(exc).__name__, exc)
