"""How ``make test`` shares the suite out among pytest-xdist workers (tests/conftest.py).

A real ``pytest -n 2 --dist loadfile`` in a subprocess, on a small tree whose conftest
uses the suite's own scheduler hook: every test notes the worker that ran it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

CONFTEST = '''
import json, os
import pytest
from tests.conftest import pytest_xdist_make_scheduler  # noqa: F401 -- the suite's hook

@pytest.fixture
def note(request):
    yield
    with open(os.environ["NOTES"], "a") as f:
        f.write(json.dumps([request.node.nodeid, os.environ.get("PYTEST_XDIST_WORKER")]) + "\\n")
'''

CLUSTER = '''
import pytest

@pytest.fixture(scope="session", name="ray_cluster")
def ray_cluster_fixture():
    return "one cluster"
'''

PLAIN = '''
import pytest

@pytest.mark.parametrize("n", range(6))
def test_plain(note, n):
    pass
'''

USES_CLUSTER = '''
from cluster import ray_cluster_fixture  # noqa: F401 -- "ray_cluster"

def test_first(note):
    pass

def test_on_the_cluster(note, ray_cluster):
    pass

def test_last(note):
    pass
'''


def _pythonpath() -> str:
    """The repository first (``tests.conftest``), then what this process was given."""
    return os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


def test_a_module_stays_on_one_worker_and_the_ray_cluster_modules_share_one(tmp_path: Path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "cluster.py").write_text(CLUSTER)
    for name in ("b", "c", "d", "e"):
        (tmp_path / f"test_{name}_plain.py").write_text(PLAIN)
    for name in ("a", "z"):  # first and last: apart in the collection order
        (tmp_path / f"test_{name}_cluster.py").write_text(USES_CLUSTER)
    notes = tmp_path / "notes.jsonl"
    env = {**os.environ, "PYTHONPATH": _pythonpath(), "NOTES": str(notes)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadfile", "-q",
         "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = [json.loads(line) for line in notes.read_text().splitlines()]
    assert len(ran) == 4 * 6 + 2 * 3
    workers: dict[str, set[str]] = defaultdict(set)
    for nodeid, worker in ran:
        workers[nodeid.partition("::")[0]].add(worker)
    assert all(len(w) == 1 for w in workers.values()), workers
    assert workers["test_a_cluster.py"] == workers["test_z_cluster.py"], workers
    assert {w for ws in workers.values() for w in ws} == {"gw0", "gw1"}


def test_without_xdist_the_hook_is_not_needed(tmp_path: Path):
    """Without pytest-xdist the scheduler hook is an optional hook: no error."""
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    pass\n")
    env = {**os.environ, "PYTHONPATH": _pythonpath(), "NOTES": str(tmp_path / "notes")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
         str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_suites_ray_cluster_modules_share_one_scope_and_others_have_their_own():
    from tests.conftest import xdist_scope

    def scope(path: str) -> str:
        assert (ROOT / path).is_file(), f"{path}: no such test module (moved?)"
        return xdist_scope(f"{path}::test_x", rootpath=ROOT)

    cluster = {scope(f"tests/integration/{name}.py")
               for name in ("orchestration/test_ray", "orchestration/test_ray_threads",
                            "orchestration/test_raycluster", "k8s/test_k8s_e2e")}
    assert cluster == {"session:ray_cluster"}
    store = "tests/integration/artifacts/test_store.py"
    assert scope(store) == store
    assert scope("tests/e2e/test_shipped_pipelines.py") == "tests/e2e/test_shipped_pipelines.py"
