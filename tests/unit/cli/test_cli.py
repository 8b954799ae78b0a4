"""The command line as a user meets it: exit codes, one JSON object, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.artifacts import load_error_context
from runner.sdk import QuantSDK
from tests.shapes import base_context

ROOT = Path(__file__).resolve().parents[3]

STAGES = {
    "log.a": "tests.shapes:log_a",
    "log.b": "tests.shapes:log_b",
    "add.x": "tests.shapes:add_x",
    "add.y": "tests.shapes:add_y",
    "fail": "tests.shapes:fail",
    "value.1": "tests.shapes:value_1_again",
    "value.2": "tests.shapes:value_2_again",
}
MANIFEST = {
    "pipelines": {
        "ok": {"steps": ["log.a", ["add.x", "add.y"], "log.b"], "description": "fine",
               "context": "tests.shapes:ShapeContext"},
        "boom": {"steps": ["log.a", "fail"], "context": "tests.shapes:ShapeContext"},
        "clash": {"steps": [["value.1", "value.2"]], "context": "tests.shapes:ShapeContext"},
        "outer": {"steps": ["ok", "log.a"], "context": "tests.shapes:ShapeContext"},
    },
    "stages": STAGES,
}


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(MANIFEST))
    return path


def cli(*args, cwd, env=None):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=120, check=False)


def test_run_json_success(manifest, tmp_path):
    proc = cli("run", "ok", "-m", manifest, "--json", "--run-id", "cli-ok", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "succeeded" and doc["run_id"] == "cli-ok"
    assert doc["pipeline"] == "ok"
    assert [s["name"] for s in doc["steps"]] == ["log.a", "add.x", "add.y", "merge", "log.b"]
    # each step is its record's own to_dict (the CLI no longer re-implements it)
    assert all(set(s) == {"name", "path", "kind", "status", "start", "end", "duration_s",
                          "executor", "pid", "node", "branch", "error", "cache_key"}
               for s in doc["steps"])
    assert {s["kind"] for s in doc["steps"]} == {"stage", "merge"}
    assert "Traceback" not in proc.stderr


def test_run_failure_exit_1_with_forensics(manifest, tmp_path):
    proc = cli("run", "boom", "-m", manifest, "--json", "--run-id", "cli-boom", cwd=tmp_path)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["status"] == "failed"
    assert "the model diverged" in doc["error"]
    pkl = tmp_path / "data/artifacts/summaries/runs/cli-boom/error_context.pkl"
    assert Path(tmp_path, doc["error_context"]) == pkl
    assert load_error_context(str(pkl)).audit_trail == ["a"]
    assert "error_context.pkl" in proc.stderr and "load_error_context(" in proc.stderr
    hint = proc.stderr.split('python -c "', 1)[1].split('"', 1)[0]
    loaded = subprocess.run([sys.executable, "-c", hint + "; print(ctx.audit_trail)"],
                            cwd=tmp_path, capture_output=True, text=True, check=False,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert loaded.stdout.strip() == "['a']", loaded.stderr
    assert "Traceback (most recent call last)" not in proc.stderr


def test_collision_exit_1(manifest, tmp_path):
    proc = cli("run", "clash", "-m", manifest, cwd=tmp_path)
    assert proc.returncode == 1
    assert "field 'value' changed by branches" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"pipelines": {"p": {"steps": ["log.a",]}}}', "malformed JSON at line 1, column"),
        ('{"pipelines": {"p": {"steps": ["nope"]}}}', "pipelines.p.steps[0]: unknown stage"),
        ('{"pipelines": {"p": {"stepz": ["log.a"]}}}', "did you mean 'steps'"),
    ],
)
def test_invalid_manifest_exit_2(tmp_path, text, needle):
    path = tmp_path / "bad.json"
    path.write_text(text)
    for args in (("validate", "-m", path), ("run", "p", "-m", path)):
        proc = cli(*args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr
        assert "Traceback" not in proc.stderr


def test_usage_errors_exit_2(manifest, tmp_path):
    assert cli("run", "ok", "-m", manifest, "--executor", "gpu", cwd=tmp_path).returncode == 2
    proc = cli("run", "ok", "-m", manifest, "--run-id", "Bad/Id", cwd=tmp_path)
    assert proc.returncode == 2 and "invalid run id" in proc.stderr
    proc = cli("run", "nope", "-m", manifest, cwd=tmp_path)
    assert proc.returncode == 2 and "no pipeline named 'nope'" in proc.stderr
    proc = cli("validate", "-m", tmp_path / "missing.json", cwd=tmp_path)
    assert proc.returncode == 2 and "file not found" in proc.stderr


def test_validate_list_graph_schema(manifest, tmp_path):
    proc = cli("validate", "-m", manifest, cwd=tmp_path)
    assert proc.returncode == 0 and "4 pipelines" in proc.stderr
    listing = cli("list", "-m", manifest, cwd=tmp_path).stdout
    assert "ok" in listing and "fine" in listing and "boom" in listing
    mermaid = cli("graph", "outer", "-m", manifest, cwd=tmp_path).stdout
    assert mermaid.startswith("flowchart TD")
    assert 'subgraph' in mermaid and '"ok"' in mermaid and '{{"merge"}}' in mermaid
    assert mermaid.count("-->") == 6
    dot = cli("graph", "ok", "-m", manifest, "--format", "dot", cwd=tmp_path).stdout
    assert dot.startswith('digraph "ok"') and "shape=diamond" in dot
    schema = json.loads(cli("schema", cwd=tmp_path).stdout)
    assert schema["title"] == "Runner pipeline manifest"


def test_tv_orch_parallel_env_without_ray_falls_back_to_processes(manifest, tmp_path):
    # a folder that shadows the ray package with nothing: as if Ray were not installed
    (tmp_path / "noray").mkdir()
    (tmp_path / "noray" / "ray.py").write_text("raise ImportError('no ray here')\n")
    sitecustomize = tmp_path / "noray" / "sitecustomize.py"
    sitecustomize.write_text("import importlib.util, sys\n"
                             "_find = importlib.util.find_spec\n"
                             "importlib.util.find_spec = lambda n, *a: None if n == 'ray' "
                             "else _find(n, *a)\n")
    proc = cli("run", "ok", "-m", manifest, "--json", cwd=tmp_path,
               env={"TV_ORCH_PARALLEL": "1",
                    "PYTHONPATH": f"{tmp_path / 'noray'}{os.pathsep}{ROOT}"})
    assert proc.returncode == 0, proc.stderr
    assert "executor=processes" in proc.stderr
    assert "Ray is not installed" in proc.stderr and "runner[ray]" in proc.stderr


def test_executor_ray_without_ray_says_how_to_install(manifest, tmp_path):
    (tmp_path / "noray").mkdir()
    (tmp_path / "noray" / "sitecustomize.py").write_text(
        "import importlib.util\n_find = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'ray' else _find(n, *a)\n")
    (tmp_path / "noray" / "ray.py").write_text("raise ImportError('no ray here')\n")
    proc = cli("run", "ok", "-m", manifest, "--executor", "ray", cwd=tmp_path,
               env={"PYTHONPATH": f"{tmp_path / 'noray'}{os.pathsep}{ROOT}"})
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'runner[ray]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sdk_runs_from_manifest_and_cleans_up(manifest, tmp_path):
    calls = []

    class RecordingSDK(QuantSDK):
        def cleanup_workspace(self, run_id):
            calls.append(run_id)
            return super().cleanup_workspace(run_id)

    sdk = RecordingSDK(manifest, artifacts=tmp_path / "a")
    result = sdk.run_pipeline("ok", base_context(), run_id="sdk-1")
    assert list(result.context.feature_store.columns) == ["p", "x", "y"]
    assert calls == ["sdk-1"]
    with pytest.raises(Exception, match="the model diverged"):
        sdk.run_pipeline("boom", base_context(), run_id="sdk-2")
    assert calls == ["sdk-1", "sdk-2"]
    assert (tmp_path / "a/summaries/runs/sdk-2/error_context.pkl").exists()
    assert not sdk.workspace("sdk-2").exists()


def test_graph_svg_needs_graphviz(manifest, tmp_path):
    """With Graphviz, an SVG file; without it, exit 2 and how to install it."""
    import shutil

    proc = cli("graph", "ok", "-m", manifest, "--format", "svg", "-o", tmp_path / "ok.svg",
               cwd=tmp_path)
    if shutil.which("dot"):
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "ok.svg").read_text().lstrip().startswith("<?xml")
    else:
        assert proc.returncode == 2
        assert "apt-get install graphviz" in proc.stderr and "--format mermaid|dot" in proc.stderr
        assert not (tmp_path / "ok.svg").exists()
