"""Reading a run back: run.json with its journal, a checkpoint's index, a field, a context.

Everything read is verified before it is used: documents are signed
(:mod:`runner.artifacts.documents`), a field's object (a file, in runs written before
objects) is checked against the digest its index names before it is decoded, and a
context is only built as a type the plan declares (nothing is imported for a store).
An inline checkpoint has no files: its record in run.json or the journal carries its
index.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from runner.artifacts.codec import decode
from runner.artifacts.documents import (
    CheckpointRef,
    FieldEntry,
    IndexDoc,
    RunDoc,
    read_index_doc,
    read_run_doc,
)
from runner.artifacts.journal import read_journal_state, resolve_bases
from runner.artifacts.layout import RunPaths
from runner.artifacts.objects import object_binding, object_path
from runner.artifacts.store import ArtifactStore
from runner.digest import digest_matches, sha256
from runner.errors import ArtifactError, IntegrityError

__all__ = ["field_binding", "field_bytes", "load_checkpoint", "load_field", "read_index",
           "read_run"]


def read_run(store: ArtifactStore, run_id: str, *, allow_unsigned: bool = False) -> RunDoc:
    """run.json of ``run_id`` with the checkpoints its journal records since, verified,
    typed and confined to the run (:class:`IntegrityError` otherwise)."""
    doc = read_run_doc(store, run_id, allow_unsigned=allow_unsigned)
    paths = RunPaths(run_id)
    if any(c.base is not None for c in doc.checkpoints):
        doc = doc.model_copy(update={"checkpoints": resolve_bases(
            doc.checkpoints, where=store.url_of(paths.run_file))})
    if doc.journal is None:
        return doc
    top = max((c.seq for c in doc.checkpoints), default=0)
    journal = read_journal_state(store, run_id, doc.journal, allow_unsigned=allow_unsigned)
    later = [c for c in journal.checkpoints if c.seq > top]
    if not later:
        return doc
    if any(c.base is not None for c in later):
        known = {c.seq: c for c in doc.checkpoints if c.fields is not None}
        later = resolve_bases(later, where=store.url_of(paths.journal_file), known=known)
    done = set(doc.completed)
    completed = [*doc.completed, *(c.path for c in later
                                   if c.kind == "step" and c.path not in done)]
    synced = max(top, journal.synced)  # run.json lists only durable checkpoints
    return doc.model_copy(update={
        "checkpoints": [*doc.checkpoints, *later], "completed": completed,
        "synced": synced if later[-1].seq > synced else None})


def read_index(store: ArtifactStore, run_id: str, checkpoint: CheckpointRef | str, *,
               allow_unsigned: bool = False) -> IndexDoc:
    """A checkpoint's index: its index.json, verified, typed and bound to its run and
    folder; or, for an inline checkpoint, the one its ref carries (verified with the
    run.json or journal line that lists it). Given a folder name only, an inline
    checkpoint is looked up in the run's record (:func:`read_run`)."""
    if isinstance(checkpoint, CheckpointRef):
        if checkpoint.inline:
            return checkpoint.index(run_id)
        return read_index_doc(store, run_id, checkpoint.dir, allow_unsigned=allow_unsigned)
    try:
        return read_index_doc(store, run_id, checkpoint, allow_unsigned=allow_unsigned)
    except ArtifactError as exc:
        if not exc.missing or isinstance(exc, IntegrityError):
            raise
        doc = read_run(store, run_id, allow_unsigned=allow_unsigned)
        for ref in doc.checkpoints:
            if ref.dir == checkpoint and ref.inline:
                return ref.index(run_id)
        raise


def field_binding(run_id: str, file: str) -> dict[str, str]:
    """What a field's pickle is signed for in a run written before objects: this run,
    this file (relative to the run). A pickle kept as an object is signed for
    :func:`~runner.artifacts.objects.object_binding` instead."""
    return {"kind": "field", "run_id": run_id, "file": file}


def field_bytes(store: ArtifactStore, run_id: str, entry: FieldEntry, *, name: str = "",
                checkpoint: str = "") -> tuple[bytes, str]:
    """The stored bytes of one field (not inline), checked against the digest its
    verified index names, and their URL. The store is untrusted: bytes that do not
    match (an object swapped, truncated or edited) are an :class:`IntegrityError`
    naming the object, the checkpoint and the field; a missing one an ArtifactError."""
    what = f"field {name!r} of checkpoint {checkpoint or '?'} of run {run_id}"
    if entry.object is not None:
        rel = object_path(entry.object)
    else:
        rel = RunPaths(run_id).member(entry.file)
    where = store.url_of(rel)
    try:
        data = store.read_bytes(rel, size=entry.bytes)
    except ArtifactError as exc:
        if not exc.missing or isinstance(exc, IntegrityError):
            raise
        raise ArtifactError(f"{where} ({what}) is missing from the store", url=where,
                            missing=True) from exc
    if not digest_matches(data, entry.digest):
        raise IntegrityError(f"{where} ({what}) does not match its digest in the checkpoint "
                             f"index ({len(data)} bytes, sha256 {sha256(data)[:16]}...): "
                             "swapped, truncated or modified on the store", url=where)
    return data, where


def load_field(store: ArtifactStore, run_id: str, entry: FieldEntry, *, name: str = "",
               checkpoint: str = "", allow_unsigned: bool = False) -> Any:
    """One field of a checkpoint (``name``: the field's, which a pickled object is
    signed for), its digest checked before it is decoded; a pickle is unpickled only
    once its signature verifies. An inline value: as its verified record holds it."""
    if entry.inline:
        return copy.deepcopy(entry.value)
    data, where = field_bytes(store, run_id, entry, name=name, checkpoint=checkpoint)
    binding = (object_binding(name) if entry.object is not None
               else field_binding(run_id, entry.file))
    return decode(entry.format, data, where=f"{where} (field {name!r})", binding=binding,
                  allow_unsigned=allow_unsigned, series_name=entry.series_name)


def load_checkpoint(store: ArtifactStore, run_id: str, checkpoint: CheckpointRef | str, *,
                    types: Mapping[str, type[Any]], allow_unsigned: bool = False) -> Any:
    """The context saved by ``checkpoint`` (its ref, or its folder), as one of ``types``
    (``module:qualname`` -> type: the plan's own, :meth:`Plan.context_types`);
    nothing is imported."""
    index = read_index(store, run_id, checkpoint, allow_unsigned=allow_unsigned)
    paths = RunPaths(run_id)
    step_dir = checkpoint.dir if isinstance(checkpoint, CheckpointRef) else checkpoint
    where = store.url_of(paths.journal_file if isinstance(checkpoint, CheckpointRef)
                         and checkpoint.inline else paths.index_file(step_dir))
    ctype = types.get(index.context_type)
    if ctype is None:
        raise IntegrityError(f"{where}: context type {index.context_type[:120]!r} is not one "
                             "this pipeline declares (" + ", ".join(sorted(types)) + ")",
                             url=where)
    known = getattr(ctype, "model_fields", {})
    unknown = [name for name in index.fields if name not in known]
    if unknown:
        raise IntegrityError(f"{where}: {ctype.__name__} has no field(s) "
                             f"{', '.join(unknown)[:200]}", url=where)
    values = {name: load_field(store, run_id, entry, name=name, checkpoint=step_dir,
                               allow_unsigned=allow_unsigned)
              for name, entry in index.fields.items()}
    return ctype.model_construct(None, **values)
