"""The names the forkserver and its preload share, in a module that imports nothing.

:mod:`.preload_plan` runs inside the forkserver that :mod:`.forkserver` starts;
both read these, so neither imports the other (no import cycle).
"""

from __future__ import annotations

__all__ = ["ENGINE_PRELOAD", "PLAN_ENV"]

PLAN_ENV = "RUNNER_FORKSERVER_PLAN"
"""Set for the forkserver only: the plan whose modules it imports (JSON)."""

ENGINE_PRELOAD = ("runner.orchestration.execute", "pandas")
"""What every worker needs to receive a branch: the step loop and the context's frames."""
