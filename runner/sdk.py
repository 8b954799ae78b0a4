"""QuantSDK: the Python front door, as the seed design names it.

    sdk = QuantSDK()                                # configs/manifest.json
    result = sdk.run_pipeline("alpha.full")         # RunResult
    sdk.cleanup_workspace(result.run_id)            # scratch only, never artifacts
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from runner.manifest import Manifest, load_manifest
from runner.orchestration.executors import Executor
from runner.orchestration.hooks import RunHook
from runner.orchestration.plan import Plan, compile_plan
from runner.orchestration.records import RunResult
from runner.orchestration.runner import DAGRunner
from runner.registry import StageRegistry
from runner.workspace import remove_workspace, workspace_path

__all__ = ["DEFAULT_MANIFEST", "QuantSDK"]

DEFAULT_MANIFEST = "configs/manifest.json"


def default_manifest() -> str:
    return os.environ.get("RUNNER_MANIFEST", DEFAULT_MANIFEST)


class QuantSDK:
    """Loads pipeline definitions from the manifest and runs them."""

    def __init__(
        self,
        manifest: str | os.PathLike[str] | Manifest | None = None,
        *,
        registry: StageRegistry | None = None,
        artifacts: str | os.PathLike[str] | None = None,
        workspace_root: str | os.PathLike[str] | None = None,
    ) -> None:
        self._manifest_arg = manifest if manifest is not None else default_manifest()
        self.registry = registry
        self.artifacts = artifacts or os.environ.get("RUNNER_ARTIFACTS", "data/artifacts")
        self.workspace_root = workspace_root

    @cached_property
    def manifest(self) -> Manifest:
        if isinstance(self._manifest_arg, Manifest):
            return self._manifest_arg
        return load_manifest(self._manifest_arg)

    def plan(self, pipeline: str) -> Plan:
        """Compile ``pipeline`` from the manifest."""
        return compile_plan(self.manifest, pipeline, registry=self.registry)

    def runner(
        self,
        pipeline: str,
        *,
        executor: str | Executor | None = None,
        run_id: str | None = None,
        hooks: Sequence[RunHook] = (),
        **options: Any,
    ) -> DAGRunner:
        """A DAGRunner for ``pipeline``, wired to this SDK's artifacts and cleanup."""
        return DAGRunner(
            self.plan(pipeline), executor=executor, run_id=run_id, hooks=hooks,
            artifacts=self.artifacts, workspace_root=self.workspace_root,
            cleanup=self.cleanup_workspace, **options,
        )

    def run_pipeline(
        self,
        name: str,
        context: Any = None,
        *,
        executor: str | Executor | None = None,
        run_id: str | None = None,
        hooks: Sequence[RunHook] = (),
        **options: Any,
    ) -> RunResult:
        """Run a pipeline defined in the manifest; see :class:`DAGRunner` for options."""
        runner = self.runner(name, executor=executor, run_id=run_id, hooks=hooks, **options)
        return runner.run(context)

    def workspace(self, run_id: str) -> Path:
        """The scratch folder of a run."""
        return workspace_path(run_id, self.workspace_root)

    def cleanup_workspace(self, run_id: str) -> bool:
        """Remove a run's scratch workspace; artifacts and forensics are never touched."""
        return remove_workspace(run_id, self.workspace_root)
