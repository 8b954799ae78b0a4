"""Shared fixtures: every executor, a scratch artifact root, a scratch workspace root;
and how the suite is shared out among pytest-xdist workers (``make test``: ``-n 2``)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest

EXECUTORS = ["inline", "threads", "processes"]

#: A test module that imports this fixture uses the session's Ray cluster
#: (tests/raycluster.py): all such modules go to one xdist worker, so the suite starts
#: the cluster once, not once per worker.
SHARED_CLUSTER_FIXTURE = "ray_cluster_fixture"
SHARED_CLUSTER_SCOPE = "session:ray_cluster"


@functools.cache
def _uses_shared_cluster(path: Path) -> bool:
    """Whether the test module at ``path`` imports the session's Ray cluster."""
    try:
        return SHARED_CLUSTER_FIXTURE in path.read_text(encoding="utf-8")
    except OSError:
        return False


def xdist_scope(nodeid: str, *, rootpath: Path) -> str:
    """Which worker-bound unit a test belongs to: its module (module-scoped fixtures -- a
    pipeline run, a rendered chart -- are then made once, as in a serial run), or one
    shared unit for every module that uses the session's Ray cluster."""
    module = nodeid.partition("::")[0]
    return SHARED_CLUSTER_SCOPE if _uses_shared_cluster(rootpath / module) else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` (``make test``: ``-n 2 --dist loadfile``) by :func:`xdist_scope`.

    (xdist's ``loadgroup`` would group by marks, but on pytest 9.2 it cannot add the
    group to a test's node id, so it ignores them.)
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    rootpath = config.rootpath

    class ByModuleAndCluster(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid, rootpath=rootpath)

    return ByModuleAndCluster(config, log)


@pytest.fixture(params=EXECUTORS)
def executor(request: pytest.FixtureRequest) -> str:
    """The contract suite runs once per executor."""
    return str(request.param)


@pytest.fixture
def artifacts(tmp_path):
    return tmp_path / "artifacts"


@pytest.fixture(autouse=True)
def _workspaces(tmp_path, monkeypatch):
    """Keep scratch workspaces inside the test's folder."""
    root = tmp_path / "workspaces"
    monkeypatch.setenv("RUNNER_WORKSPACE_ROOT", str(root))
    return root


def _session_env(name: str, value: str):
    """Set ``name`` for the whole session (subprocesses inherit it), then restore it."""
    old = os.environ.get(name)
    os.environ[name] = value
    yield
    if old is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = old


@pytest.fixture(autouse=True, scope="session")
def _artifact_key_file(tmp_path_factory):
    """Never touch the real home: the artifact key file (made on first use) lives in a
    per-session folder, and subprocesses inherit where."""
    path = tmp_path_factory.mktemp("runner-config") / "artifact.key"
    for _ in _session_env("RUNNER_ARTIFACT_KEY_FILE", str(path)):
        yield path


@pytest.fixture(autouse=True, scope="session")
def _cli_cache_dir(tmp_path_factory):
    """The command line's kept checks (runner.cli.cache) go to a per-session folder,
    never the real home; subprocesses inherit where."""
    path = tmp_path_factory.mktemp("runner-cache")
    for _ in _session_env("RUNNER_CACHE_DIR", str(path)):
        yield path
