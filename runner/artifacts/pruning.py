"""Pruning the runs on a store (``runs prune``): finished runs and their forensics, and
run folders left without a run document, once old enough and no live lease holds them."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from runner.artifacts.layout import RunPaths
from runner.artifacts.lease import RunLease
from runner.artifacts.listing import list_runs
from runner.artifacts.store import ArtifactStore

__all__ = ["prune_runs"]

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
