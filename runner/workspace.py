"""Scratch workspaces: one temporary folder per run that stages may use.

The folder lives under ``$RUNNER_WORKSPACE_ROOT`` (default: the system's
temporary folder) and is removed when the run ends; it never holds artifacts
or forensics, which live in the artifact store.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from runner.errors import UsageError

__all__ = ["RUN_ID_PATTERN", "check_run_id", "create_workspace", "remove_workspace",
           "workspace_path"]

RUN_ID_PATTERN = re.compile(r"[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?")
"""Matched whole (``fullmatch``): ``$`` would also accept a trailing newline."""


def check_run_id(run_id: str) -> str:
    """Run ids become folder and Kubernetes names: lowercase, digits, '-', '.', <= 63."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id) or ".." in run_id:
        raise UsageError(
            f"invalid run id {run_id!r}: use 1-63 lowercase letters, digits, '-' or '.', "
            "starting and ending with a letter or digit"
        )
    return run_id


def _root(root: str | os.PathLike[str] | None) -> Path:
    if root is not None:
        return Path(root)
    env = os.environ.get("RUNNER_WORKSPACE_ROOT")
    return Path(env) if env else Path(tempfile.gettempdir()) / "runner-workspaces"


def workspace_path(run_id: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Where run ``run_id``'s scratch folder is (whether or not it exists)."""
    return _root(root) / check_run_id(run_id)


def create_workspace(run_id: str, root: str | os.PathLike[str] | None = None) -> Path:
    path = workspace_path(run_id, root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def remove_workspace(run_id: str, root: str | os.PathLike[str] | None = None) -> bool:
    """Remove the scratch folder; True when there was one."""
    path = workspace_path(run_id, root)
    try:
        path.rmdir()  # the common case, an unused folder, without a tree walk
    except FileNotFoundError:
        return False
    except OSError:
        shutil.rmtree(path)
    return True
