"""The plan: a manifest pipeline compiled into what to run, with no data.

One module a concept: the step types and the :class:`Plan` (``steps``), compiling a
manifest into a plan (``compiler``), the manifest's own stages and adapters
registered for a compile (``entries``), and what a parallel group carries besides
its steps, merge rules and resources (``groups``).
"""

from runner.orchestration.plan.compiler import compile_all, compile_plan
from runner.orchestration.plan.steps import (
    AdapterStep,
    Branch,
    ParallelGroup,
    PipelineStep,
    Plan,
    StageStep,
    Step,
)

__all__ = [
    "AdapterStep",
    "Branch",
    "ParallelGroup",
    "PipelineStep",
    "Plan",
    "StageStep",
    "Step",
    "compile_all",
    "compile_plan",
]
