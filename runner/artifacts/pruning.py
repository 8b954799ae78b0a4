"""Pruning the runs on a store (``runs prune``): finished runs and their forensics, and
run folders left without a run document, once old enough and no live lease holds them;
then the objects no remaining run nor step-cache entry references (:func:`sweep_store`).

The artifacts layer knows runs, not the step cache: the caller hands the digests the
cache entries name (``runner.cache.entries.referenced_objects``) as ``also_referenced``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection
from datetime import UTC, datetime

from runner.artifacts.layout import RunPaths
from runner.artifacts.lease import RunLease
from runner.artifacts.listing import list_runs
from runner.artifacts.objects import DEFAULT_GRACE, ObjectStore, SweepReport, sweep_objects
from runner.artifacts.reading import read_index
from runner.artifacts.results import MAX_BYTES, charts_object
from runner.artifacts.store import ArtifactStore
from runner.errors import ArtifactError, IntegrityError

__all__ = ["prune_runs", "referenced_by_runs", "sweep_store"]

log = logging.getLogger("runner.artifacts")


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


def referenced_by_runs(store: ArtifactStore, *, allow_unsigned: bool = False,
                       excluding: Collection[str] = ()) -> tuple[set[str], list[str]]:
    """Every object digest the checkpoints of the runs on the store name (the runs in
    ``excluding`` aside: those about to be pruned), and what could not be read: a run
    whose record or a checkpoint's index does not read or verify may name any object.
    A listed checkpoint whose index is missing (lost by a machine that stopped) names
    none that anyone can read."""
    found: set[str] = set()
    problems: list[str] = []
    for listing in list_runs(store, allow_unsigned=allow_unsigned):
        if listing.run_id in excluding or listing.empty:
            continue  # an empty folder: no record, so no checkpoint either
        if listing.doc is None:
            problems.append(listing.problem or listing.run_id)
            continue
        for ckpt in listing.doc.checkpoints:
            try:
                index = read_index(store, listing.run_id, ckpt, allow_unsigned=allow_unsigned)
            except ArtifactError as exc:
                if exc.missing and not isinstance(exc, IntegrityError):
                    continue
                problems.append(str(exc))
                continue
            found.update(e.object for e in index.fields.values() if e.object is not None)
        if listing.doc.results is not None:
            found.update(_results_objects(store, listing.run_id, problems))
    return found, problems


def _results_objects(store: ArtifactStore, run_id: str, problems: list[str]) -> set[str]:
    """The objects a run's results.json names (its charts); a results file that cannot be
    read may name any object (a problem), a missing one names none."""
    try:
        data = store.read_bytes(RunPaths(run_id).results_file, limit=MAX_BYTES + 1)
    except ArtifactError as exc:
        if not exc.missing:
            problems.append(str(exc))
        return set()
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        problems.append(f"{store.url_of(RunPaths(run_id).results_file)}: not JSON ({exc})")
        return set()
    digest = charts_object(doc) if isinstance(doc, dict) else None
    return {digest} if digest is not None else set()


def sweep_store(store: ArtifactStore, *, also_referenced: Collection[str] = (),
                excluding: Collection[str] = (), dry_run: bool = False,
                allow_unsigned: bool = False, grace: float = DEFAULT_GRACE,
                now: float | None = None) -> SweepReport:
    """Delete the objects that no run's checkpoint (``excluding`` the runs named: a dry
    run of ``runs prune`` that has not deleted them yet) and nothing in
    ``also_referenced`` (the step cache's entries) names, once older than ``grace``
    seconds (an object put by a run still going on survives: it is younger, or it was
    refreshed when put again). When a run's references cannot be read, nothing is
    deleted and the report says why (``skipped``)."""
    referenced, problems = referenced_by_runs(store, allow_unsigned=allow_unsigned,
                                              excluding=excluding)
    if problems:
        why = (f"not sweeping objects: {len(problems)} run record(s) or index(es) cannot be "
               f"read, so the objects they name are unknown (first: {problems[0][:300]}); "
               "runs prune --unreadable deletes unreadable runs")
        log.warning("%s: %s", store.url, why)
        return SweepReport(deleted=[], kept_young=[], referenced=len(referenced), skipped=why)
    referenced.update(also_referenced)
    return sweep_objects(ObjectStore(store, grace=grace), referenced, dry_run=dry_run, now=now)
