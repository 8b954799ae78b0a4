"""Branches on Ray hit the step cache where they run (in the Ray worker), and a group
cached whole completes on the driver without a task."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.raycluster import (
    RayCluster,
    child_env,
    ray_cluster_fixture,  # noqa: F401 -- the session's two-node cluster, "ray_cluster"
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]

_DRIVER = """
import json, os, sys
from runner.artifacts import ArtifactStore
from runner.cache.step_cache import StepCache
from runner.orchestration.runner import DAGRunner
from tests.shapes import base_context, plan_for
import tests.unit.orchestration.test_memo  # registers memo.always (cache=False)

branches = [["add.y", "memo.always"], "add.x"]  # the dispatched branch first, or last
plan = plan_for(["log.a", branches if sys.argv[2] == "first" else branches[::-1]])
cache = lambda: StepCache(ArtifactStore(sys.argv[1]), runner_version="test")
DAGRunner(plan, executor="inline", cache=cache()).run(base_context())
result = DAGRunner(plan, executor="ray", cache=cache()).run(base_context())
print(json.dumps({"driver": os.getpid(),
                  "records": [[r.name, r.status, r.pid] for r in result.records]}))
"""


@pytest.mark.parametrize("dispatched", ["first", "last"])
def test_branches_hit_on_ray_workers(ray_cluster: RayCluster, dispatched: str,
                                     tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _DRIVER, str(tmp_path), dispatched], cwd=ROOT,
                          env=child_env(ray_cluster.env()), capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    records = {name: (status, pid) for name, status, pid in seen["records"]}
    assert {n: s for n, (s, _) in records.items()} == {
        "log.a": "cached", "add.y": "cached", "memo.always": "succeeded", "add.x": "cached",
        "merge": "succeeded"}
    assert records["add.x"][1] == seen["driver"]  # cached whole: completed on the driver
    assert records["add.y"][1] == records["memo.always"][1] != seen["driver"]  # on Ray
