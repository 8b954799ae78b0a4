"""Shared fixtures: every executor, a scratch artifact root, a scratch workspace root."""

from __future__ import annotations

import os

import pytest

EXECUTORS = ["inline", "threads", "processes"]


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
    """The command line's kept checks (runner.cli_cache) go to a per-session folder,
    never the real home; subprocesses inherit where."""
    path = tmp_path_factory.mktemp("runner-cache")
    for _ in _session_env("RUNNER_CACHE_DIR", str(path)):
        yield path
