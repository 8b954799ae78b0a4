"""Listing the runs on a store (``runs list``): each folder under ``runs/`` with its
run document, or why it has none that reads."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from runner.artifacts.documents import RunDoc
from runner.artifacts.layout import RUNS, RunPaths, is_run_id
from runner.artifacts.lease import RunLease
from runner.artifacts.reading import read_run
from runner.artifacts.store import ArtifactStore
from runner.errors import ArtifactError, IntegrityError

__all__ = ["RunListing", "list_runs"]

log = logging.getLogger("runner.artifacts")


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
