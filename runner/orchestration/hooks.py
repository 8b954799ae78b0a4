"""Lifecycle hooks: how progress, checkpoints and tracing plug into the engine.

A hook overrides any of these no-op methods. Hooks run in the driver process;
with the ``threads`` executor they are called from worker threads, so a hook
must be thread-safe. Steps that ran in another process (``processes``, Ray)
are reported by ``on_step_end`` when their branch returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.orchestration.plan import Branch, ParallelGroup, Plan, Step
    from runner.orchestration.records import RunInfo, RunResult, StepRecord

__all__ = ["RunHook"]


class RunHook:
    """Base class for run lifecycle hooks; every method is optional."""

    def on_run_start(self, run: RunInfo, plan: Plan, context: Any) -> None:
        """The run is about to execute its first step."""

    def on_step_start(self, run: RunInfo, step: Step) -> None:
        """A stage or adapter is about to run in this process."""

    def on_step_end(self, run: RunInfo, record: StepRecord, context: Any | None) -> None:
        """A stage, adapter or merge finished; ``context`` is its output when local."""

    def on_group_start(self, run: RunInfo, group: ParallelGroup) -> None:
        """A parallel group is about to fork."""

    def on_branch_end(self, run: RunInfo, branch: Branch, context: Any | None) -> None:
        """One branch finished (``context`` is None when it failed or was cancelled)."""

    def on_group_end(self, run: RunInfo, group: ParallelGroup, context: Any | None) -> None:
        """The group merged (``context`` is None when it failed)."""

    def on_run_end(
        self, run: RunInfo, result: RunResult | None, error: BaseException | None
    ) -> None:
        """The run ended, with a result or an error."""
