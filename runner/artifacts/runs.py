"""Runs on the store: forensics, resume, listing and pruning (who owns a run id: lease.py)."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runner.artifacts.checkpoint import (
    last_main_checkpoint,
    load_checkpoint,
    read_run,
    run_dir,
)
from runner.artifacts.codec import KEY_ENV, _pickle, unpickle
from runner.artifacts.store import ArtifactStore
from runner.errors import ArtifactError, UsageError
from runner.forensics import LocalForensics
from runner.orchestration.plan import Plan
from runner.orchestration.records import Resume

__all__ = ["StoreForensics", "list_runs", "load_error_context", "prepare_resume", "prune_runs"]

log = logging.getLogger("runner.artifacts")


# ---------------------------------------------------------------- forensics


@dataclass
class StoreForensics:
    """Forensics through the store; a local folder when the store itself fails."""

    store: ArtifactStore
    fallback: str = "data/artifacts"

    def write(self, run_id: str, context: Any, info: dict[str, Any]) -> str | None:
        base = f"summaries/runs/{run_id}"
        try:
            target: str | None = f"{base}/error_context.pkl"
            try:
                payload = _pickle(context)
            except Exception as exc:  # an unpicklable context must not hide the error
                info = {**info, "pickle_error": f"{type(exc).__name__}: {exc}"}
                target = None
            else:
                assert target is not None
                self.store.write_bytes(target, payload)
            where = self.store.url_of(target) if target else None
            info = {**info, "error_context": where, "signed": bool(os.environ.get(KEY_ENV))}
            self.store.write_bytes(f"{base}/error.json",
                                   json.dumps(info, indent=2, default=str).encode())
            return where
        except ArtifactError as exc:
            log.error("cannot write forensics to %s (%s); writing them to %s instead",
                      self.store.url, exc, self.fallback)
            return LocalForensics(self.fallback).write(run_id, context, info)


def load_error_context(location: str, storage_options: dict[str, Any] | None = None) -> Any:
    """The forensic context at ``location`` (a path or URL), its signature checked
    when ``RUNNER_ARTIFACT_KEY`` is set."""
    parent, _, name = location.rstrip("/").rpartition("/")
    store = ArtifactStore(parent or ".", storage_options)
    return unpickle(store.read_bytes(name), where=location)


# ---------------------------------------------------------------- resume


def prepare_resume(store: ArtifactStore, run_id: str, plan: Plan, *, force: bool = False
                   ) -> tuple[Resume | None, dict[str, Any]]:
    """The context and done steps to resume ``run_id`` from (None: start afresh)."""
    if not store.exists(f"{run_dir(run_id)}/run.json"):
        return None, {}
    doc = read_run(store, run_id)
    if doc.get("pipeline") != plan.pipeline:
        raise UsageError(f"run {run_id!r} ran pipeline {doc.get('pipeline')!r}, "
                         f"not {plan.pipeline!r}")
    if plan.manifest_digest and doc.get("manifest_digest") not in ("", plan.manifest_digest):
        if not force:
            raise UsageError(f"the manifest changed since run {run_id!r} started; "
                             "resume with --force to use the new one anyway")
        log.warning("resuming run %s with a changed manifest (--force)", run_id)
    if doc.get("status") == "succeeded":
        raise UsageError(f"run {run_id!r} already succeeded; nothing to resume")
    main = [s.path for s in plan.main_line()]
    completed = [p for p in doc.get("completed", []) if p in main]
    last = last_main_checkpoint(doc)
    if last is None or not completed:
        return None, doc
    if completed != main[: len(completed)]:
        raise UsageError(f"run {run_id!r}: its completed steps do not match this pipeline's "
                         "steps; resume with the manifest it started with")
    context = load_checkpoint(store, run_id, last["dir"])
    return Resume(context, frozenset(completed)), doc


# ---------------------------------------------------------------- listing


def list_runs(store: ArtifactStore) -> list[dict[str, Any]]:
    """Every run's run.json (newest first); unreadable ones reported as such."""
    out = []
    for run_id in store.listdir("runs"):
        try:
            doc = read_run(store, run_id)
        except ArtifactError as exc:
            doc = {"run_id": run_id, "status": "unreadable", "error": {"message": str(exc)}}
        out.append(doc)
    return sorted(out, key=lambda d: str(d.get("started") or ""), reverse=True)


def prune_runs(store: ArtifactStore, *, older_than_days: float, dry_run: bool = False
               ) -> list[str]:
    """Delete finished runs (and their forensics) that ended more than N days ago."""
    cutoff = time.time() - older_than_days * 86400
    pruned = []
    for doc in list_runs(store):
        if doc.get("status") == "running":
            continue
        ended = doc.get("ended") or doc.get("updated") or doc.get("started")
        try:
            when = datetime.fromisoformat(str(ended))
        except ValueError:
            continue
        stamp = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
        if stamp < cutoff:
            run_id = str(doc["run_id"])
            pruned.append(run_id)
            if not dry_run:
                store.delete(run_dir(run_id), recursive=True)
                store.delete(f"summaries/runs/{run_id}", recursive=True)
    return pruned
