"""Checkpoints: every main-line step and every branch leaves the context on the store.

Layout under the store root:

    runs/<RUN_ID>/run.json                       pipeline, manifest digest, status, steps done
    runs/<RUN_ID>/lock.json                      who runs it now (heartbeat)
    runs/<RUN_ID>/steps/<NNN>-<name>/index.json  field -> file, sha256, bytes, rows
    runs/<RUN_ID>/steps/<NNN>-<name>/<field>.parquet|json|pkl
    summaries/runs/<RUN_ID>/error_context.pkl    forensics, with error.json beside it

A field unchanged since the previous checkpoint is referenced, not rewritten.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runner.artifacts.codec import decode, encode, sha256
from runner.artifacts.store import ArtifactStore
from runner.context import fork_value, values_equal
from runner.errors import ArtifactError, IntegrityError
from runner.orchestration.hooks import RunHook
from runner.orchestration.plan import Branch, ParallelGroup, Plan
from runner.orchestration.records import RunInfo, RunResult, StepRecord
from runner.registry import import_object

__all__ = ["FORMAT", "CheckpointHook", "last_main_checkpoint", "load_checkpoint", "load_field",
           "read_index", "read_run", "run_dir"]

FORMAT = 1


def run_dir(run_id: str) -> str:
    return f"runs/{run_id}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "step"


def _type_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def read_json(store: ArtifactStore, rel: str) -> dict[str, Any]:
    raw = store.read_bytes(rel)
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise IntegrityError(f"{store.url_of(rel)}: not valid JSON: {exc}",
                             url=store.url_of(rel)) from exc
    if not isinstance(doc, dict):
        raise IntegrityError(f"{store.url_of(rel)}: not a JSON object", url=store.url_of(rel))
    return doc


def read_run(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    return read_json(store, f"{run_dir(run_id)}/run.json")


def read_index(store: ArtifactStore, run_id: str, step_dir: str) -> dict[str, Any]:
    return read_json(store, f"{run_dir(run_id)}/{step_dir}/index.json")


def load_field(store: ArtifactStore, run_id: str, entry: dict[str, Any]) -> Any:
    """One field of a checkpoint, its sha256 checked before it is decoded."""
    rel = f"{run_dir(run_id)}/{entry['file']}"
    data = store.read_bytes(rel)
    where = store.url_of(rel)
    if sha256(data) != entry["sha256"]:
        raise IntegrityError(f"{where}: sha256 does not match the checkpoint index "
                             "(corrupted or modified)", url=where)
    return decode(entry["format"], data, where=where, series_name=entry.get("series_name"))


def load_checkpoint(store: ArtifactStore, run_id: str, step_dir: str) -> Any:
    """The context saved in ``steps/<step_dir>``."""
    index = read_index(store, run_id, step_dir)
    values = {name: load_field(store, run_id, entry) for name, entry in index["fields"].items()}
    ctype = import_object(index["context_type"])
    return ctype.model_construct(None, **values)


@dataclass
class _Kept:
    value: Any
    entry: dict[str, Any]


@dataclass
class CheckpointHook(RunHook):
    """Writes a checkpoint after every main-line step and every branch, and run.json."""

    store: ArtifactStore
    plan: Plan
    manifest_digest: str = ""
    completed: list[str] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    _last: dict[str, _Kept] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _doc: dict[str, Any] = field(default_factory=dict)
    _main: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._main = {s.path for s in self.plan.main_line()}

    # ------------------------------------------------------------ run.json

    def on_run_start(self, run: RunInfo, plan: Plan, context: Any) -> None:
        base = run_dir(run.run_id)
        previous = (read_run(self.store, run.run_id)
                    if self.store.exists(f"{base}/run.json") else {})
        self.checkpoints = list(previous.get("checkpoints", [])) if self.completed else []
        self._doc = {
            "format": FORMAT, "run_id": run.run_id, "pipeline": run.pipeline,
            "trace_id": run.trace_id, "executor": run.executor,
            "manifest_digest": self.manifest_digest, "status": "running",
            "started": previous.get("started", _now()) if self.completed else _now(),
            "attempts": int(previous.get("attempts", 0)) + 1,
            "ended": None, "error": None,
        }
        self._save()

    def on_run_end(self, run: RunInfo, result: RunResult | None,
                   error: BaseException | None) -> None:
        if not self._doc:
            return  # the run never started
        self._doc.update(status="succeeded" if error is None else "failed", ended=_now())
        if error is not None:
            self._doc["error"] = {"type": type(error).__name__, "message": str(error)}
        try:
            self._save()
        except ArtifactError:
            if error is None:
                raise

    def _save(self) -> None:
        self._doc.update(completed=self.completed, checkpoints=self.checkpoints,
                         updated=_now())
        data = json.dumps(self._doc, indent=2, default=str).encode()
        self.store.write_bytes(f"{run_dir(self._doc['run_id'])}/run.json", data)

    # ------------------------------------------------------------ checkpoints

    def on_step_end(self, run: RunInfo, record: StepRecord, context: Any | None) -> None:
        if context is None or record.branch is not None or record.path not in self._main:
            return
        self._checkpoint(run, record.name, record.path, "step", context)

    def on_branch_end(self, run: RunInfo, branch: Branch, context: Any | None) -> None:
        if context is not None:
            self._checkpoint(run, f"branch-{branch.label}", branch.path, "branch", context)

    def on_group_end(self, run: RunInfo, group: ParallelGroup, context: Any | None) -> None:
        if context is not None and group.path in self._main:
            self._checkpoint(run, "merge", group.path, "step", context)

    def _checkpoint(self, run: RunInfo, name: str, path: str, kind: str, ctx: Any) -> None:
        with self._lock:  # branches may end at once on the threads executor
            seq = len(self.checkpoints) + 1
            step_dir = f"steps/{seq:03d}-{_slug(name)}"
            base = run_dir(run.run_id)
            fields: dict[str, Any] = {}
            values = getattr(ctx, "__dict__", {"value": ctx})
            for fname, value in values.items():
                kept = self._last.get(fname)
                if kept is not None and values_equal(value, kept.value):
                    fields[fname] = kept.entry  # unchanged: a reference, not a rewrite
                    continue
                enc = encode(value)
                rel = f"{step_dir}/{fname}.{enc.suffix}"
                self.store.write_bytes(f"{base}/{rel}", enc.data)
                entry = {"file": rel, "format": enc.format, "sha256": sha256(enc.data),
                         "bytes": len(enc.data), "rows": enc.rows}
                if enc.format == "series":
                    entry["series_name"] = enc.series_name
                fields[fname] = entry
                if kind == "step":
                    self._last[fname] = _Kept(fork_value(value), entry)
            index = {"format": FORMAT, "run_id": run.run_id, "name": name, "path": path,
                     "kind": kind, "context_type": _type_path(ctx), "created": _now(),
                     "fields": fields}
            self.store.write_bytes(f"{base}/{step_dir}/index.json",
                                   json.dumps(index, indent=2, default=str).encode())
            self.checkpoints.append({"seq": seq, "dir": step_dir, "name": name, "path": path,
                                     "kind": kind})
            if kind == "step":
                self.completed.append(path)
            self._save()


def last_main_checkpoint(doc: dict[str, Any]) -> dict[str, Any] | None:
    steps = [c for c in doc.get("checkpoints", []) if c.get("kind") == "step"]
    return steps[-1] if steps else None
