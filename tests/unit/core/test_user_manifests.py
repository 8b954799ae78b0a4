"""A researcher's manifest where they keep it, at the command line: stage modules are
found beside the manifest, not in the current folder (and an error says where it
looked), in worker processes too; their own stage named like a shipped one wins,
with a one-line note, where it used to be "registered twice".
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.unit.cli.test_user_errors import ROOT, cli

STAGES = '''\
"""A researcher's stages."""


def prepare(ctx):
    ctx.log("prepared")
    return ctx


def other(ctx):
    ctx.log("other")
    return ctx
'''

DEMO = {
    "pipelines": {"demo": {"steps": ["prepare", ["prepare", "other"]]}},
    "stages": {"prepare": "my_stages:prepare", "other": "my_stages:other"},
}


@pytest.fixture
def parent(tmp_path):
    """``qs/demo.json`` and ``qs/my_stages.py``, run from the folder above."""
    (tmp_path / "qs").mkdir()
    (tmp_path / "qs" / "my_stages.py").write_text(STAGES)
    (tmp_path / "qs" / "demo.json").write_text(json.dumps(DEMO))
    return tmp_path


# ---------------------------------------------------------------- the manifest's folder


@pytest.mark.parametrize("executor", ["inline", "processes"])
def test_stage_modules_resolve_from_the_manifests_folder(parent, executor):
    proc = cli("run", "demo", "-m", "qs/demo.json", "-e", executor, "--json", cwd=parent)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "succeeded"
    assert cli("validate", "-m", "qs/demo.json", cwd=parent).returncode == 0


def test_a_missing_module_names_the_folders_searched(parent):
    (parent / "qs" / "my_stages.py").rename(parent / "my_stages.py")  # beside the user
    for args in (["validate"], ["run", "demo"]):
        proc = cli(*args, "-m", "qs/demo.json", cwd=parent)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.splitlines()
        assert lines[:2] == [
            "error: invalid pipeline in qs/demo.json:",
            "  stages.prepare: cannot import module 'my_stages' for 'my_stages:prepare': No "
            "module named 'my_stages'; searched qs (the manifest's folder) and the installed "
            "packages; the current folder is not searched, where 'my_stages' is: put it "
            "beside the manifest, or pass --path ."]
        assert "Traceback" not in proc.stderr
    # as the hint says
    ok = cli("run", "demo", "-m", "qs/demo.json", "--path", ".", cwd=parent)
    assert ok.returncode == 0, ok.stderr
    # --path folders are named too
    (parent / "my_stages.py").unlink()
    (parent / "lib").mkdir()
    proc = cli("validate", "-m", "qs/demo.json", "--path", "lib", cwd=parent)
    assert proc.returncode == 2
    assert "; searched lib (--path), qs (the manifest's folder) and the installed packages" \
        in proc.stderr


def test_worker_processes_import_each_manifests_modules(tmp_path):
    """One Python process (a notebook) runs two manifests from two folders on worker
    processes: the workers started for the first find the second's modules too."""
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"{name}_stages.py").write_text(STAGES)
        manifest = {"pipelines": {"demo": {"steps": [["prepare", "other"]]}},
                    "stages": {"prepare": f"{name}_stages:prepare",
                               "other": f"{name}_stages:other"}}
        (folder / "demo.json").write_text(json.dumps(manifest))
    script = textwrap.dedent("""
        from runner import QuantSDK

        for name in ("a", "b"):
            sdk = QuantSDK(f"{name}/demo.json", artifacts="art")
            result = sdk.run_pipeline("demo", executor="processes", tracing=False)
            print(name, sorted(result.context.audit_trail))  # appended in completion order
        """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["a ['other', 'prepared']", "b ['other', 'prepared']"]


# ---------------------------------------------------------------- shipped names

OWN = '''\
"""My own take on the shipped stages."""
from runner import stage


@stage("foundation.ingest", reads=["params"], writes=["prices", "universe"])
def ingest(ctx):
    import numpy as np
    import pandas as pd

    steps = np.random.default_rng(7).normal(0, 0.01, size=(300, 2))
    ctx.prices = pd.DataFrame(100 * np.exp(steps.cumsum(axis=0)), columns=["AAA", "BBB"],
                              index=pd.bdate_range("2024-01-01", periods=300, name="date"))
    ctx.universe = ["AAA", "BBB"]
    ctx.log("my own ingest")
    return ctx


def regime(ctx):
    ctx.regime = "calm"
    return ctx
'''

OWN_MANIFEST = {
    "pipelines": {"mine": {
        "context": "runner.stages.contexts:PortfolioContext",
        "steps": ["foundation.ingest", ["foundation.features", "my.regime"]]}},
    "stages": {"foundation.ingest": "my_stages:ingest", "my.regime": "my_stages:regime"},
}


@pytest.mark.parametrize("executor", ["inline", "processes"])
def test_a_users_stage_named_like_a_shipped_one_wins_with_a_note(tmp_path, executor):
    (tmp_path / "my_stages.py").write_text(OWN)
    (tmp_path / "manifest.json").write_text(json.dumps(OWN_MANIFEST))
    note = ("note: manifest stages.\"foundation.ingest\" (my_stages:ingest) replaces the "
            "shipped stage 'foundation.ingest' (runner.stages.foundation:ingest) for this "
            "manifest")
    proc = cli("run", "mine", "-m", "manifest.json", "-e", executor, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "registered twice" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if "note:" in line] == [
        line for line in proc.stderr.splitlines() if line.endswith(note)]
    assert proc.stderr.count(note) == 1
    doc = json.loads(proc.stdout)
    assert doc["status"] == "succeeded"
    # theirs ran, next to a shipped stage that stayed available
    names = [s["name"] for s in doc["steps"] if s["name"] != "merge"]
    assert names[0] == "foundation.ingest"  # branches in the order they ended
    assert sorted(names[1:]) == ["foundation.features", "my.regime"]
    validate = cli("validate", "-m", "manifest.json", cwd=tmp_path)
    assert validate.returncode == 0, validate.stderr
    assert validate.stderr.count(note) == 1
