"""A declarative pipeline runner for quant research.

One manifest (``configs/manifest.json``) declares pipelines as ordered steps
with parallel groups; one engine runs them locally, in parallel, on Ray or as
Kubernetes Jobs, passing a typed :class:`Context` from stage to stage.
"""

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
__version__ = "0.1.0"
