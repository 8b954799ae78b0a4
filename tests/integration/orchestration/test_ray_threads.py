"""Ray branches: native thread pools sized to the CPUs a task holds, and the same
weights as inline on the benchmark universe. Ray runs in CLI subprocesses only."""

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
    require_ray,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]

USER_STAGES = '''
import json, os
from pathlib import Path


def _report(ctx, name):
    import sklearn.cluster  # noqa: F401 - loads scikit-learn's OpenMP runtime
    from threadpoolctl import threadpool_info

    info = threadpool_info()
    Path(ctx.params["out"], name + ".json").write_text(json.dumps({
        "pid": os.getpid(), "env": os.environ.get("OMP_NUM_THREADS"),
        "blas": sorted({i["num_threads"] for i in info if i["user_api"] == "blas"}),
        "openmp": sorted({i["num_threads"] for i in info if i["user_api"] == "openmp"})}))
    return ctx


def report(ctx):
    return _report(ctx, "report")


def more(ctx):
    return _report(ctx, "more")
'''


def cli(*args: str, cwd: Path, env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "run", *args, "--json"],
                          cwd=cwd, env=child_env(env), capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def test_ray_branches_get_the_cpus_their_task_holds_as_threads(tmp_path):
    """A user's stages, on a local Ray started for the run: a branch that asks for
    nothing holds one CPU and gets one thread; one asking for 2 CPUs gets 2."""
    require_ray()
    (tmp_path / "thread_stages_mine.py").write_text(USER_STAGES)
    manifest = {
        "stages": {"threads.report": "thread_stages_mine:report",
                   "threads.more": "thread_stages_mine:more"},
        "pipelines": {"threads": {
            "context": "runner.stages.contexts:PortfolioContext",
            "steps": [["threads.report", "threads.more"]],
            "resources": {"threads.more": {"num_cpus": 2}}}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    out.mkdir()
    doc = cli("threads", "-m", "manifest.json", "-e", "ray", "--param", f"out={out}",
              "--artifacts", str(tmp_path / "a"), cwd=tmp_path, env={"RAY_ADDRESS": ""})
    assert doc["status"] == "succeeded"
    got = {name: json.loads((out / f"{name}.json").read_text()) for name in ("report", "more")}
    assert got["report"]["env"] == "1"
    assert got["report"]["blas"] == got["report"]["openmp"] == [1]
    assert got["more"]["env"] == "2"
    assert got["more"]["blas"] == got["more"]["openmp"] == [2]


WARM_STAGES = '''
import json, os, sys
from pathlib import Path

from runner.registry import stage


def _seen(ctx, name):
    Path(ctx.params["out"], name + ".json").write_text(json.dumps(
        {"pid": os.getpid(), "loaded": "warm_marker" in sys.modules}))
    return ctx


@stage("warm.heavy", imports=["warm_marker"])
def heavy(ctx):
    return _seen(ctx, "heavy")


@stage("warm.light")
def light(ctx):
    return _seen(ctx, "light")
'''

MARKER = '''
import os
from pathlib import Path

with open(Path(os.environ["WARM_MARKER_LOG"]), "a") as log:
    log.write(f"{os.getpid()}\\n")
'''


def test_ray_workers_import_the_branches_modules_before_the_branches_run(tmp_path):
    """Once Ray is reached, the workers the branches will use import what the branches
    declare (the widest group's two branches: two workers); the branches reuse them."""
    require_ray()
    (tmp_path / "warm_stages_mine.py").write_text(WARM_STAGES)
    (tmp_path / "warm_marker.py").write_text(MARKER)
    manifest = {
        "stages": {"warm.heavy": "warm_stages_mine:heavy", "warm.light": "warm_stages_mine:light"},
        "pipelines": {"warm": {"context": "runner.stages.contexts:PortfolioContext",
                               "steps": [["warm.heavy", "warm.light"]]}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    out.mkdir()
    log = tmp_path / "marker.log"
    doc = cli("warm", "-m", "manifest.json", "-e", "ray", "--param", f"out={out}",
              "--artifacts", str(tmp_path / "a"), cwd=tmp_path,
              env={"RAY_ADDRESS": "", "WARM_MARKER_LOG": str(log)})
    assert doc["status"] == "succeeded"
    got = {name: json.loads((out / f"{name}.json").read_text()) for name in ("heavy", "light")}
    assert all(seen["loaded"] for seen in got.values()), got  # loaded before they ran
    imported = log.read_text().split()
    assert {str(seen["pid"]) for seen in got.values()} <= set(imported)
    driver = {str(s["pid"]) for s in doc["steps"] if not s["branch"]}  # the merge
    assert driver and not driver & set(imported)  # not by the driver


def test_alpha_parallel_on_the_universe_gives_inline_weights_on_ray(ray_cluster: RayCluster,
                                                                   tmp_path):
    from runner.stages.universe import extended_prices

    data = tmp_path / "prices.parquet"
    extended_prices(32).to_parquet(data)
    manifest = str(ROOT / "configs/manifest.json")
    inline = cli("alpha.parallel", "-m", manifest, "--data", str(data), "--artifacts",
                 str(tmp_path / "inline"), cwd=tmp_path, env={})
    on_ray = cli("alpha.parallel", "-m", manifest, "--data", str(data), "-e", "ray",
                 "--artifacts", str(tmp_path / "ray"), cwd=tmp_path, env=ray_cluster.env())
    assert {s["executor"] for s in on_ray["steps"] if s["branch"]} == {"ray"}
    assert len(on_ray["result"]["weights"]) == 32
    assert on_ray["result"] == inline["result"]
