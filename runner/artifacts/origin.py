"""Starting a new run from another run's checkpoint (``runner run P --from STEP --origin
RUN_ID``): the origin's context after the step before STEP, as a
:class:`~runner.orchestration.records.Resume` of the new run, so the engine starts
there as it does for a resumed run.

The origin must be in the store, have run the same pipeline from the same manifest
(unless ``force``) and have committed the checkpoint after the step before STEP;
each refusal is one :class:`UsageError` line (exit 2).
"""

from __future__ import annotations

import logging
from typing import Any

from runner.artifacts.documents import CheckpointRef, RunDoc
from runner.artifacts.layout import RUNS, RunPaths, is_run_id
from runner.artifacts.reading import load_checkpoint, read_run
from runner.artifacts.store import ArtifactStore
from runner.errors import UsageError
from runner.orchestration.plan import Plan
from runner.orchestration.plan.slicing import PartialRun, partial_run
from runner.orchestration.records import Resume
from runner.words import did_you_mean
from runner.workspace import check_run_id

__all__ = ["prepare_origin", "start_partial"]

log = logging.getLogger("runner.artifacts")


def prepare_origin(store: ArtifactStore, partial: PartialRun, plan: Plan, *,
                   force: bool = False, allow_unsigned: bool = False
                   ) -> tuple[Resume, CheckpointRef]:
    """The context and done steps a ``--from`` run starts with, and the origin's
    checkpoint they come from. ``plan``: the whole pipeline's (its context types)."""
    origin = partial.origin
    if origin is None or not partial.done:
        raise ValueError("prepare_origin: a partial run with --from and --origin")
    check_run_id(origin)
    if not store.exists(RunPaths(origin).run_file):
        known = [n for n in store.listdir(RUNS) if is_run_id(n)]
        raise UsageError(f"--origin: no run {origin!r} in {store.url_of(RUNS)}"
                         f"{did_you_mean(origin, known)}; runner runs list shows the runs there")
    doc = read_run(store, origin, allow_unsigned=allow_unsigned)
    if doc.pipeline != plan.pipeline:
        raise UsageError(f"--origin {origin!r} ran pipeline {doc.pipeline!r}, not "
                         f"{plan.pipeline!r}")
    if plan.manifest_digest and doc.manifest_digest not in ("", plan.manifest_digest):
        if not force:
            raise UsageError(f"--origin {origin!r} ran another version of the manifest "
                             "(its digest differs); --force starts from it anyway")
        log.warning("starting from run %s, made with another manifest (--force)", origin)
    before = partial.done[-1]
    found = [c for c in doc.checkpoints if c.kind == "step" and c.path == before]
    if not found or before not in doc.completed:
        reached = ", ".join(doc.completed) or "none"
        raise UsageError(f"--origin {origin!r} did not reach the checkpoint after {before} "
                         f"(the step before --from {partial.from_step}); the steps it "
                         f"completed: {reached}")
    checkpoint = found[-1]
    context = load_checkpoint(store, origin, checkpoint, types=plan.context_types(),
                              allow_unsigned=allow_unsigned)
    return Resume(context, frozenset(partial.done), attempt=1), checkpoint


def start_partial(store: ArtifactStore, partial: PartialRun | None, plan: Plan, *,
                  state: Resume | None, previous: RunDoc | None, force: bool,
                  allow_unsigned: bool, prepared: tuple[Resume, CheckpointRef] | None = None,
                  ) -> tuple[Resume | None, list[str], dict[str, Any] | None]:
    """Where a run starts: ``state`` (a resume's) and the main-line steps done, in order,
    with what run.json says of it as a partial run (None: a whole run). ``plan``: the
    whole pipeline's. A ``--from`` run with nothing of its own to resume from (new, or
    stopped before its first checkpoint) starts from its origin's checkpoint; a resumed
    one keeps its origin, and its ``--to`` when given again (it runs to that step).
    ``prepared``: :func:`prepare_origin`'s answer for ``partial``, when the caller
    checked the origin before taking the run id (a refused origin leaves nothing)."""
    before = previous.partial if previous is not None else None
    given = partial
    if partial is None and before is not None and before.origin is not None:
        partial = partial_run(plan, from_step=before.from_step, origin=before.origin)
    if partial is not None and partial.origin is not None and state is None:
        state, checkpoint = prepared if prepared is not None and partial is given else \
            prepare_origin(store, partial, plan, force=force, allow_unsigned=allow_unsigned)
        return state, list(partial.done), partial.record(checkpoint.dir)
    main = [s.path for s in plan.main_line()]
    completed = sorted(state.completed, key=main.index) if state is not None else []
    if partial is None:
        return state, completed, None
    return state, completed, partial.record(before.checkpoint if before is not None else None)
