"""Forensic capture: the context a failing stage received, kept for post-mortems.

The default writer puts ``error_context.pkl`` and ``error.json`` under
``<root>/summaries/runs/<RUN_ID>/``, where the seed design puts them. Writes
are atomic (temporary name, then rename), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Protocol

__all__ = ["ForensicsWriter", "LocalForensics"]

PICKLE_NAME = "error_context.pkl"
INFO_NAME = "error.json"


class ForensicsWriter(Protocol):
    """Where the engine puts a failed run's forensics; returns the pickle's location."""

    def write(self, run_id: str, context: Any, info: dict[str, Any]) -> str | None: ...


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalForensics:
    """Forensics in a local folder (the artifact store takes over for remote URLs)."""

    def __init__(self, root: str | os.PathLike[str] = "data/artifacts") -> None:
        self.root = Path(root)

    def folder(self, run_id: str) -> Path:
        return self.root / "summaries" / "runs" / run_id

    def write(self, run_id: str, context: Any, info: dict[str, Any]) -> str | None:
        folder = self.folder(run_id)
        target: Path | None = folder / PICKLE_NAME
        try:
            payload = pickle.dumps(context, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an unpicklable context must not hide the stage's error
            info = {**info, "pickle_error": f"{type(exc).__name__}: {exc}"}
            target = None
        else:
            assert target is not None
            _atomic_write(target, payload)
        info = {**info, "error_context": str(target) if target else None}
        _atomic_write(folder / INFO_NAME, json.dumps(info, indent=2, default=str).encode())
        return str(target) if target else None
