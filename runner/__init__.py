"""A declarative pipeline runner for quant research.

One manifest (``configs/manifest.json``) declares pipelines as ordered steps
with parallel groups; one engine runs them locally, in parallel, on Ray or as
Kubernetes Jobs, passing a typed :class:`Context` from stage to stage.

The names below load on first use (PEP 562): ``import runner`` and the command
line's ``--help`` need none of pandas, numpy or OpenTelemetry, and
``from runner import Context`` imports only what ``Context`` needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner._lazy import lazy_getattr
from runner.version import __version__ as __version__

if TYPE_CHECKING:
    from runner.context import Context, MergeRule, MetaContext, SelectionContext
    from runner.errors import (
        Collision,
        ContextCollisionError,
        ExecutionError,
        ManifestError,
        PlanError,
        Problem,
        RegistryError,
        RunnerError,
        StageFailedError,
        UsageError,
    )
    from runner.manifest import Manifest, load_manifest, parse_manifest
    from runner.orchestration.executors import Executor
    from runner.orchestration.hooks import RunHook
    from runner.orchestration.plan import Plan, compile_plan
    from runner.orchestration.records import RunResult, StepRecord
    from runner.orchestration.runner import DAGRunner
    from runner.registry import REGISTRY, StageRegistry, context_adapter, merge_adapter, stage
    from runner.sdk import QuantSDK

_SOURCES = {
    "runner.context": ("Context", "MergeRule", "MetaContext", "SelectionContext"),
    "runner.errors": ("Collision", "ContextCollisionError", "ExecutionError", "ManifestError",
                      "PlanError", "Problem", "RegistryError", "RunnerError",
                      "StageFailedError", "UsageError"),
    "runner.manifest": ("Manifest", "load_manifest", "parse_manifest"),
    "runner.orchestration.executors": ("Executor",),
    "runner.orchestration.hooks": ("RunHook",),
    "runner.orchestration.plan": ("Plan", "compile_plan"),
    "runner.orchestration.records": ("RunResult", "StepRecord"),
    "runner.orchestration.runner": ("DAGRunner",),
    "runner.registry": ("REGISTRY", "StageRegistry", "context_adapter", "merge_adapter",
                        "stage"),
    "runner.sdk": ("QuantSDK",),
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = [
    "REGISTRY",
    "Collision",
    "Context",
    "ContextCollisionError",
    "DAGRunner",
    "ExecutionError",
    "Executor",
    "Manifest",
    "ManifestError",
    "MergeRule",
    "MetaContext",
    "Plan",
    "PlanError",
    "Problem",
    "QuantSDK",
    "RegistryError",
    "RunHook",
    "RunResult",
    "RunnerError",
    "SelectionContext",
    "StageFailedError",
    "StageRegistry",
    "StepRecord",
    "UsageError",
    "compile_plan",
    "context_adapter",
    "load_manifest",
    "merge_adapter",
    "parse_manifest",
    "stage",
]


__getattr__ = lazy_getattr("runner", _MODULE_OF, globals())


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("_"))})
