"""Runs on the store: forensics, resume, listing and pruning (who owns a run id: lease.py)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runner.artifacts.checkpoint import load_checkpoint, read_run
from runner.artifacts.codec import pickle_signed, unpickle
from runner.artifacts.documents import RunDoc
from runner.artifacts.layout import ATTEMPTS, RUNS, RunPaths, is_run_id
from runner.artifacts.lease import RunLease
from runner.artifacts.signing import sign_document
from runner.artifacts.store import ArtifactStore
from runner.errors import ArtifactError, IntegrityError, UsageError
from runner.orchestration.plan import Plan
from runner.orchestration.records import Resume

__all__ = ["RunListing", "StoreForensics", "forensics_binding", "list_runs",
           "load_error_context", "prepare_resume", "prune_runs"]

log = logging.getLogger("runner.artifacts")


# ---------------------------------------------------------------- forensics


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


# ---------------------------------------------------------------- resume


def prepare_resume(store: ArtifactStore, run_id: str, plan: Plan, *, force: bool = False,
                   allow_unsigned: bool = False) -> tuple[Resume | None, RunDoc | None]:
    """The context and done steps to resume ``run_id`` from (None: start afresh).

    A run that already succeeded gives a ``finished`` resume: nothing runs again.
    An ``interrupted`` run resumes like a failed one.
    """
    if not store.exists(RunPaths(run_id).run_file):
        return None, None
    doc = read_run(store, run_id, allow_unsigned=allow_unsigned)
    if doc.pipeline != plan.pipeline:
        raise UsageError(f"run {run_id!r} ran pipeline {doc.pipeline!r}, "
                         f"not {plan.pipeline!r}")
    if plan.manifest_digest and doc.manifest_digest not in ("", plan.manifest_digest):
        if not force:
            raise UsageError(f"the manifest changed since run {run_id!r} started; "
                             "resume with --force to use the new one anyway")
        log.warning("resuming run %s with a changed manifest (--force)", run_id)
    main = [s.path for s in plan.main_line()]
    completed = [p for p in doc.completed if p in main]
    if doc.status == "succeeded":  # a retried pod: nothing to do, not an error
        return Resume(None, frozenset(completed), finished=True,
                      attempt=doc.attempts), doc
    if doc.last_main_checkpoint() is None or not completed:
        return None, doc
    if completed != main[: len(completed)]:
        raise UsageError(f"run {run_id!r}: its completed steps do not match this pipeline's "
                         "steps; resume with the manifest it started with")
    types = plan.context_types()
    for ckpt in reversed([c for c in doc.checkpoints if c.kind == "step"]):
        try:
            context = load_checkpoint(store, run_id, ckpt, types=types,
                                      allow_unsigned=allow_unsigned)
        except ArtifactError as exc:
            if doc.synced is None or ckpt.seq <= doc.synced:
                raise  # durable when recorded: damaged since, not lost in a crash
            log.warning("run %s: checkpoint %s (after %s) was committed but never reached "
                        "the disk (the machine stopped before it was synced: %s); %s runs "
                        "again", run_id, ckpt.dir, ckpt.path, exc, ckpt.path)
            completed = completed[: main.index(ckpt.path)] if ckpt.path in main else completed
            continue
        if ckpt.path in completed:
            completed = completed[: completed.index(ckpt.path) + 1]
        return Resume(context, frozenset(completed), attempt=doc.attempts + 1,
                      checkpoint=ckpt.dir), doc
    return None, doc


# ---------------------------------------------------------------- listing


@dataclass(frozen=True)
class RunListing:
    """One folder under ``runs/``: its run document, or why it cannot be read
    (``empty``: it has no run.json at all, e.g. only the lease of a run that was
    refused or killed before it recorded anything)."""

    run_id: str
    doc: RunDoc | None
    problem: str | None = None
    empty: bool = False

    @property
    def status(self) -> str:
        if self.doc is not None:
            return self.doc.status
        return "empty" if self.empty else "unreadable"

    @property
    def started(self) -> str:
        return (self.doc.started if self.doc else None) or ""


def list_runs(store: ArtifactStore, *, allow_unsigned: bool = False) -> list[RunListing]:
    """Every run folder (newest first); one whose run.json does not read or verify is
    listed as unreadable, one without run.json as empty. Folder names that are no run
    id are skipped."""
    out = []
    for name in store.listdir(RUNS):
        if not is_run_id(name):
            log.warning("%s: not a run id, skipped", store.url_of(RUNS, name[:80]))
            continue
        try:
            out.append(RunListing(name, read_run(store, name, allow_unsigned=allow_unsigned)))
        except ArtifactError as exc:
            if exc.missing and not isinstance(exc, IntegrityError) \
                    and not store.exists(RunPaths(name).run_file):
                what = ", ".join(store.listdir(RunPaths(name).dir)) or "nothing"
                holder = RunLease(store, name).live_holder()
                why = (f"starting, its lease held by {holder}" if holder else
                       "a run that stopped before it recorded anything")
                out.append(RunListing(name, None, f"{store.url_of(RUNS, name)} has no run.json "
                                      f"(holds {what}): {why}", empty=True))
                continue
            out.append(RunListing(name, None, str(exc)))
    return sorted(out, key=lambda r: r.started, reverse=True)


def prune_runs(store: ArtifactStore, *, older_than_days: float, dry_run: bool = False,
               allow_unsigned: bool = False, unreadable: bool = False) -> list[str]:
    """Delete finished runs (and their forensics) that ended more than N days ago,
    and run folders without run.json last written that long ago; with ``unreadable``
    also those whose run.json does not read or verify. A folder whose lease a live
    process may hold is kept.

    The folder deleted is the one listed (a valid run id), never a name read
    from inside run.json.
    """
    cutoff = time.time() - older_than_days * 86400
    pruned = []
    for listing in list_runs(store, allow_unsigned=allow_unsigned):
        doc = listing.doc
        if doc is None:
            if not (listing.empty or unreadable) or not _idle_since(store, listing.run_id,
                                                                   cutoff):
                continue  # unreadable: kept for a human to look at, unless asked
        elif doc.status == "running":
            continue
        else:
            ended = doc.ended or doc.updated or doc.started
            try:
                when = datetime.fromisoformat(str(ended))
                stamp = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
            except (ValueError, OverflowError):
                continue
            if stamp >= cutoff:
                continue
        paths = RunPaths(listing.run_id)
        pruned.append(listing.run_id)
        if not dry_run:
            store.delete(paths.dir, recursive=True)
            store.delete(paths.forensics_dir, recursive=True)
    return pruned


def _idle_since(store: ArtifactStore, run_id: str, cutoff: float) -> bool:
    """Whether a run folder without a readable run.json was last written before
    ``cutoff`` and no live process holds its lease."""
    paths = RunPaths(run_id)
    stamp = store.newest_modified(paths.dir) or store.modified(paths.dir)
    if stamp is None or stamp >= cutoff:
        return False
    holder = RunLease(store, run_id).live_holder()
    if holder is not None:
        log.warning("%s: kept, its lease is held by %s", store.url_of(paths.dir), holder)
        return False
    return True
