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


@pytest.fixture(autouse=True, scope="session")
def _artifact_key_file(tmp_path_factory):
    """Never touch the real home: the artifact key file (made on first use) lives in a
    per-session folder, and subprocesses inherit where."""
    path = tmp_path_factory.mktemp("runner-config") / "artifact.key"
    old = os.environ.get("RUNNER_ARTIFACT_KEY_FILE")
    os.environ["RUNNER_ARTIFACT_KEY_FILE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("RUNNER_ARTIFACT_KEY_FILE", None)
    else:
        os.environ["RUNNER_ARTIFACT_KEY_FILE"] = old


@pytest.fixture(autouse=True, scope="session")
def _cli_cache_dir(tmp_path_factory):
    """The command line's kept checks (runner.cli_cache) go to a per-session folder,
    never the real home; subprocesses inherit where."""
    path = tmp_path_factory.mktemp("runner-cache")
    old = os.environ.get("RUNNER_CACHE_DIR")
    os.environ["RUNNER_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("RUNNER_CACHE_DIR", None)
    else:
        os.environ["RUNNER_CACHE_DIR"] = old
