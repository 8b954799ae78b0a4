"""Resuming a run: the context and done steps to start from, read from its run document
and its newest checkpoint that loads."""

from __future__ import annotations

import logging

from runner.artifacts.documents import RunDoc
from runner.artifacts.layout import RunPaths
from runner.artifacts.reading import load_checkpoint, read_run
from runner.artifacts.store import ArtifactStore
from runner.errors import ArtifactError, UsageError
from runner.orchestration.plan import Plan
from runner.orchestration.records import Resume

__all__ = ["prepare_resume"]

log = logging.getLogger("runner.artifacts")


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
