"""A failed run's forensics on the store: the context the failing stage received
(``error_context.pkl``, a signed pickle) and what happened (``error.json``, signed).

The one forensics writer: the engine calls it through :class:`runner.forensics.ForensicsWriter`;
a local folder is a store like any other (``ArtifactStore("data/artifacts")``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from runner.artifacts.codec import pickle_signed, unpickle
from runner.artifacts.documents import Count, Text, read_document
from runner.artifacts.layout import ATTEMPTS, RunPaths, is_run_id
from runner.artifacts.signing import sign_document
from runner.artifacts.store import ArtifactStore
from runner.errors import ArtifactError, IntegrityError, UsageError

__all__ = [
    "ErrorDoc",
    "StoreForensics",
    "forensics_binding",
    "load_error_context",
    "read_error_doc",
]

log = logging.getLogger("runner.artifacts")


def forensics_binding(run_id: str) -> dict[str, str]:
    """What a forensic pickle is signed for: this run's error context."""
    return {"kind": "forensics", "run_id": run_id}


@dataclass
class StoreForensics:
    """Forensics through the store; a local folder (also an ArtifactStore, so also
    signed) when the store itself fails."""

    store: ArtifactStore
    fallback: str | None = "data/artifacts"

    def write(self, run_id: str, context: Any, info: dict[str, Any]) -> str | None:
        paths = RunPaths(run_id)
        try:
            target: str | None = paths.error_context_file
            try:
                payload = pickle_signed(context, binding=forensics_binding(run_id))
            except Exception as exc:  # an unpicklable context must not hide the error
                info = {**info, "pickle_error": f"{type(exc).__name__}: {exc}"}
                target = None
            else:
                assert target is not None
                self.store.write_bytes(target, payload)
            where = self.store.url_of(target) if target else None
            info = {**info, "run_id": run_id, "error_context": where, "signed": True}
            self.store.write_bytes(paths.error_info_file,
                                   json.dumps(sign_document(info), indent=2).encode())
            return where
        except ArtifactError as exc:
            if self.fallback is None:
                raise
            log.error("cannot write forensics to %s (%s); writing them to %s instead",
                      self.store.url, exc, self.fallback)
            return StoreForensics(ArtifactStore(self.fallback), None).write(run_id, context,
                                                                            info)


def load_error_context(location: str, storage_options: dict[str, Any] | None = None, *,
                       allow_unsigned: bool = False) -> Any:
    """The forensic context at ``location`` (``.../summaries/runs/<RUN_ID>/error_context.pkl``,
    or an earlier attempt's ``.../<RUN_ID>/attempts/<N>/error_context.pkl``; a path or
    URL), unpickled only once its signature verifies for that run."""
    parent, _, name = location.rstrip("/").rpartition("/")
    parts = parent.split("/")
    run_id = parts[-1]
    if len(parts) >= 3 and parts[-2] == ATTEMPTS and parts[-1].isdigit():
        run_id = parts[-3]
    if not is_run_id(run_id):
        raise UsageError(f"{location}: not a forensic context "
                         "(.../summaries/runs/<RUN_ID>/error_context.pkl)")
    store = ArtifactStore(parent or ".", storage_options)
    return unpickle(store.read_bytes(name), where=location,
                    binding=forensics_binding(run_id), allow_unsigned=allow_unsigned)


class ErrorDoc(BaseModel):
    """summaries/runs/<RUN_ID>/error.json (forensics of a failed stage)."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True, defer_build=True)

    run_id: Text
    trace_id: Text | None = None
    pipeline: Text | None = None
    stage: Text | None = None
    path: Text | None = None
    kind: Text | None = None
    exception_type: Text | None = None
    message: Text | None = None
    traceback: Text | None = None
    pid: Count | None = None
    time: Text | None = None
    error_context: Text | None = None
    pickle_error: Text | None = None


def read_error_doc(store: ArtifactStore, run_id: str, *, allow_unsigned: bool = False,
                   attempt: int | None = None) -> ErrorDoc:
    """error.json of ``run_id``'s forensics (of its earlier ``attempt``): verified,
    typed, naming this run."""
    paths = RunPaths(run_id)
    rel = paths.error_info_file if attempt is None else paths.attempt_error_info_file(attempt)
    where = store.url_of(rel)
    doc = read_document(store, rel, ErrorDoc, allow_unsigned=allow_unsigned)
    if doc.run_id != run_id:
        raise IntegrityError(f"{where} belongs to run {doc.run_id[:80]!r}, not {run_id!r}",
                             url=where)
    return doc
