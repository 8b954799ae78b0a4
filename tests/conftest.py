"""Shared fixtures: every executor, a scratch artifact root, a scratch workspace root."""

from __future__ import annotations

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
