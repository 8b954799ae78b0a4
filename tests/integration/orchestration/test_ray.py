"""The RayComputeEngine against a real Ray: the session's two-node cluster on loopback,
and a local Ray the engine starts itself. Ray runs in driver subprocesses only
(tests/integration/ray_driver.py and the CLI), never in the pytest process. What Ray
must do like every executor (a failing branch, cancellation, a killed worker) is in
tests/unit/orchestration/test_executor_contract.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.raycluster import (
    RayCluster,
    child_env,
    ray_cluster_fixture,  # noqa: F401 -- the session's two-node cluster, "ray_cluster"
    require_ray,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "configs/manifest.json"


def driver(cluster: RayCluster, case: str, tmp: Path, address: str | None = None,
           env: dict[str, str] | None = None) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    env = cluster.env() | ({"RAY_ADDRESS": address} if address else {}) | (env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "tests.integration.ray_driver", case, str(tmp)], cwd=ROOT,
        env=child_env(env), capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_shape_and_merge_rule_equals_inline(ray_cluster, tmp_path):
    results = driver(ray_cluster, "matrix", tmp_path)
    assert len(results) == 4 * 4
    for key, got in results.items():
        inline, on_ray = got["inline"], got["ray"]
        if key.endswith("collision"):
            assert inline["error"] == on_ray["error"] == "ContextCollisionError", key
            assert inline["message"] == on_ray["message"], key
            continue
        assert "error" not in on_ray, (key, on_ray)
        mine, theirs = on_ray["context"], inline["context"]
        # declaration-ordered merges are identical
        assert mine["feature_store"] == theirs["feature_store"], key
        assert mine["table"] == theirs["table"], key
        # completion-ordered merges (append, last/first_wins) hold the same items, in
        # the one order the branches completed in on Ray, for every field alike
        assert sorted(mine["notes"]) == sorted(theirs["notes"]), key
        order = [int(note[1:]) for note in mine["notes"]]
        assert mine["audit_trail"] == ["a", *(f"branch {i}" for i in order), "b"], key
        rule = key.split("-", 1)[1]
        expected = {"last_wins": 10 * (order[-1] + 1), "first_wins": 10 * (order[0] + 1),
                    "custom": theirs["value"]}[rule]
        assert mine["value"] == expected, key
        n = int(key.split("-")[0])
        assert list(on_ray["context"]["feature_store"]) == ["p", *(f"c{i}" for i in range(n))]
        branch_records = [r for r in on_ray["records"] if r["branch"]]
        assert len(branch_records) == 3 * n
        assert {r["executor"] for r in branch_records} == {"ray"}
        assert all(r["node"] and r["pid"] for r in branch_records)
        assert {r["pid"] for r in branch_records} != {os.getpid()}


def test_branches_run_on_both_nodes_as_their_resources_ask(ray_cluster, tmp_path):
    result = driver(ray_cluster, "nodes", tmp_path)
    assert "error" not in result, result
    by_name: dict[str, set[str]] = {}
    for record in result["records"]:
        if record["branch"]:
            by_name.setdefault(record["name"], set()).add(record["node"])
    assert by_name["where"] == {ray_cluster.worker_node_id}
    assert by_name["slow"] == {ray_cluster.head_node_id}
    main_line = [r for r in result["records"] if not r["branch"]]
    assert all(r["node"] is None for r in main_line)  # sequential steps stay on the driver


def test_a_ray_client_address_runs_the_branches_on_the_cluster_too(ray_cluster, tmp_path):
    """RAY_ADDRESS=ray://host:10001: the driver is a Ray client, not a node of the cluster
    (as in a Kubernetes Job whose pod talks to a KubeRay head)."""
    assert ray_cluster.client_address.startswith("ray://127.0.0.1:")
    result = driver(ray_cluster, "nodes", tmp_path, address=ray_cluster.client_address)
    assert "error" not in result, result
    nodes = {r["name"]: r["node"] for r in result["records"] if r["branch"]}
    assert nodes["where"] == ray_cluster.worker_node_id
    assert nodes["slow"] == ray_cluster.head_node_id
    assert all(r["pid"] != result["records"][0]["pid"]
               for r in result["records"] if r["branch"])


def test_a_killed_worker_is_retried_when_max_retries_says_so(ray_cluster, tmp_path):
    result = driver(ray_cluster, "die_once", tmp_path)
    assert "error" not in result, result
    assert "survived" in result["context"]["audit_trail"]
    assert (tmp_path / "died-once").exists()


def test_large_frames_come_back_only_when_changed_and_merge_the_same(ray_cluster, tmp_path):
    result = driver(ray_cluster, "large", tmp_path)
    assert result["touch"]["same"] and result["touch"]["first"] == -1.0
    assert result["add"]["same"] and result["add"]["columns"] == ["p", "q"]


def test_stage_modules_only_the_driver_has_are_shipped_with_the_job(ray_cluster, tmp_path):
    result = driver(ray_cluster, "shipped", tmp_path)
    assert "error" not in result, result
    (line,) = [t for t in result["context"]["audit_trail"] if t.startswith("desk stage ran")]
    pid = int(line.split(" in ")[1].split()[0])
    assert pid != result["driver_pid"]
    # imported from the job's shipped copy, not from the driver's folder
    assert str(tmp_path / "mine") not in line and "desk_stages.py" in line


def test_branches_of_the_next_run_reuse_the_warm_pool_of_the_last(ray_cluster, tmp_path):
    first = driver(ray_cluster, "pool", tmp_path / "a")
    second = driver(ray_cluster, "pool", tmp_path / "b")
    assert first["driver_pid"] not in first["pids"] and len(set(first["pids"])) == 2
    # the same warm processes (their imports done), though each run is a new Ray job
    assert set(second["pids"]) <= set(first["pids"])
    off = driver(ray_cluster, "pool", tmp_path / "c", env={"RUNNER_RAY_POOL": "0"})
    assert not set(off["pids"]) & set(first["pids"])


def test_a_run_on_a_running_cluster_ends_without_waiting_for_its_disconnection(
        ray_cluster, tmp_path):
    result = driver(ray_cluster, "disconnect", tmp_path)
    # the run returned while its connection thread was still disconnecting ...
    assert result["returned_first"], result
    # ... and the next run in the process waited for that, connected and closed in turn
    assert result["closing"] == ["runner-ray-init", "runner-ray-init"], result
    assert result["both_ran"] == [2, 2] and not result["connected_after"], result


def test_a_stage_module_edited_between_runs_never_runs_stale_on_the_pool(ray_cluster,
                                                                         tmp_path):
    result = driver(ray_cluster, "pool_changed", tmp_path)
    (one, two) = result["seen"]
    assert one.startswith("version one") and two.startswith("version two")
    assert one.split()[-1] != two.split()[-1]  # a new actor for the new code


# ---------------------------------------------------------------- a local Ray, via the CLI


def no_ray_processes_of(pid_root_names: set[int]) -> list[str]:
    left = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "environ"]):
        try:
            env = proc.info.get("environ") or {}
        except psutil.Error:
            continue
        if env.get("RUNNER_TEST_MARK") in pid_root_names:
            left.append(f"{proc.info['pid']} {proc.info['name']}")
    return left


def test_cli_starts_a_local_loopback_ray_for_the_run_and_stops_it(tmp_path):
    require_ray()
    mark = f"ray-cli-{os.getpid()}-{tmp_path.name}"
    env = child_env({"RUNNER_TEST_MARK": mark, "RAY_ADDRESS": ""})
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "run", "alpha.parallel", "-m", str(MANIFEST),
         "--executor", "ray", "--json", "--artifacts", str(tmp_path / "art")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(proc.stdout)
    reference = subprocess.run(
        [sys.executable, "-m", "runner.cli", "run", "alpha.full", "-m", str(MANIFEST),
         "--json", "--artifacts", str(tmp_path / "ref")],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=600,
        check=False)
    assert reference.returncode == 0, reference.stderr[-2000:]
    assert doc["result"]["weights"] == json.loads(reference.stdout)["result"]["weights"]
    assert no_ray_processes_of({mark}) == []  # every process of the run's Ray is gone
    branch_steps = [s for s in doc["steps"] if s["branch"]]
    assert len(branch_steps) == 2 and all(s["node"] and s["pid"] for s in branch_steps)
    assert {s["executor"] for s in branch_steps} == {"ray"}
    spans = [json.loads(line) for line in
             (tmp_path / "art/runs" / doc["run_id"] / "spans.jsonl").read_text().splitlines()]
    branches = [s for s in spans if s["attributes"]["runner.kind"] == "branch"]
    assert len(branches) == 2 and {s["trace_id"] for s in spans} == {doc["trace_id"]}
    driver_pid = next(s for s in spans if s["attributes"]["runner.kind"] == "run")[
        "resource"]["process.pid"]
    assert all(s["resource"]["process.pid"] != driver_pid for s in branches)


def test_an_address_where_no_ray_answers_fails_in_seconds_with_one_clear_message(tmp_path):
    """Ray itself keeps asking for a GCS that is not there for minutes; the runner looks
    first, tries again as RUNNER_RAY_CONNECT_ATTEMPTS says, then fails the run with a
    connection error (exit 4, no traceback) and keeps the checkpoints made before the group."""
    require_ray()
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        env = child_env({"RAY_ADDRESS": address, "RUNNER_RAY_CONNECT_ATTEMPTS": "2"})
        art = tmp_path / address.replace("/", "_").replace(":", "_")
        proc = subprocess.run(
            [sys.executable, "-m", "runner.cli", "run", "alpha.parallel", "-m", str(MANIFEST),
             "--executor", "ray", "--run-id", "noray", "--artifacts", str(art)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 4, proc.stderr[-3000:]
        said = proc.stderr
        assert f"cannot start or reach Ray ({address}): ConnectionRefusedError" in said
        assert said.count("could not reach Ray at") == 1 and "attempt 2 of 2" in said
        assert "Traceback" not in said
        run = json.loads((art / "runs/noray/run.json").read_text())
        assert run["status"] == "failed"
        assert run["completed"][:2] == ["alpha.parallel[0]", "alpha.parallel[1]"]


def test_the_connection_closes_once_the_last_group_is_done(ray_cluster, tmp_path):
    """Ray's disconnection (about 0.3 s) runs while the steps after the run's last group
    run, not at its end: closed before the step after the last group, not before the
    step between the two groups; the run's end closes nothing more."""
    result = driver(ray_cluster, "released", tmp_path)
    assert result["result"]["context"]["table"]["shutdowns"] == [0, 1], result
    assert result["shutdowns"] == ["runner-ray-init"] and not result["connected_after"], result
    frame = result["result"]["context"]["feature_store"]
    assert frame == {"p": [1.0, 2.0, 3.0], **{f"c{i}": [1.0 * (i + 1), 2.0 * (i + 1),
                                                        3.0 * (i + 1)] for i in range(4)}}
