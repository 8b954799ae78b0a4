"""Cache entries: a step's key to what the step wrote, one signed JSON document each.

    cache/steps/<stage>/<KEY>.json     the entry of KEY (the sha256 of its KeyInputs)

An entry names the stage, the inputs its key was made of (for ``--dry-run``'s
"which input or code changed"), each output field's object digest and format (or its
small value inline) and its content hash, when it was made and by which runner. It
is signed like run.json (:mod:`runner.artifacts.signing`): the signature covers the
object references and hashes, so a store edited by someone without the key cannot
send a reader to other objects.

An entry is written once, with create-if-absent (:meth:`ArtifactStore.create`): of
two runs filling the same entry one wins and the other's write is dropped; a
reader sees a whole entry or none. Entries are read back verified and typed; one
that is unreadable, names another key or stage, or points outside ``objects/`` is an
:class:`IntegrityError` naming its file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from runner.artifacts.documents import parse_document
from runner.artifacts.signing import canonical_json, sign_document
from runner.artifacts.store import ArtifactStore
from runner.cache.keys import CACHE_FORMAT, StepKey
from runner.errors import ArtifactError, IntegrityError

__all__ = [
    "CACHE_DIR",
    "CacheEntryDoc",
    "EntryListing",
    "OutputRef",
    "clear_entries",
    "entry_path",
    "list_entries",
    "read_entry",
    "referenced_objects",
    "write_entry",
]

CACHE_DIR = "cache/steps"
_KEY = re.compile(r"[0-9a-f]{64}")
_FOLDER = re.compile(r"[A-Za-z0-9_.-]{1,80}")

log = logging.getLogger("runner.artifacts")

Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Text = Annotated[str, Field(max_length=10_000)]
FieldName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")]


class _Doc(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, defer_build=True)


class OutputRef(_Doc):
    """One output field of a cached step: an object and its format, or (format
    ``value``) its small JSON value itself. ``append``: the value is the items the step
    added to a log-like list field (the audit trail), appended on a hit to whatever
    the field holds then, not set: the lines before it are the earlier steps' own."""

    format: Literal["parquet", "series", "json", "pickle", "value"]
    object: Digest | None = None
    bytes: Annotated[int, Field(ge=0, le=2**53)] = 0
    rows: Annotated[int, Field(ge=0, le=2**53)] | None = None
    series_name: Any = None
    value: Any = None
    append: bool = False
    digest: Digest | None = None
    """The field's content hash (:func:`runner.cache.fields.field_digest`) as the step
    wrote it: what a later step's key reads for the field on a hit, instead of hashing
    the value read back. Entries made before it was kept have none."""

    @model_validator(mode="after")
    def _object_or_value(self) -> OutputRef:
        if (self.format == "value") != (self.object is None):
            raise ValueError("a value output names no object, any other names one")
        return self


class CacheEntryDoc(_Doc):
    """cache/steps/<stage>/<KEY>.json."""

    format: Literal[1]
    key: Digest
    stage: Text
    inputs: dict[str, Any]
    outputs: dict[FieldName, OutputRef]
    created: Text
    runner_version: Text

    def objects(self) -> set[str]:
        return {o.object for o in self.outputs.values() if o.object is not None}


def _folder(stage: str) -> str:
    """The stage's folder: its name when that is a safe path segment, else a slug
    (the document inside says the exact name)."""
    if _FOLDER.fullmatch(stage) and stage not in (".", ".."):
        return stage
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", stage).strip("-.")[:80]
    return slug or "stage"


def entry_path(stage: str, key: str) -> str:
    """``cache/steps/<stage>/<key>.json``; a key that is not 64 hex digits is refused."""
    if not _KEY.fullmatch(key):
        raise IntegrityError(f"{key[:80]!r} is not a cache key (64 hex digits)", url=key[:80])
    return f"{CACHE_DIR}/{_folder(stage)}/{key}.json"


def write_entry(store: ArtifactStore, step: StepKey, outputs: Mapping[str, OutputRef], *,
                runner_version: str) -> bool:
    """Write the entry of ``step`` unless one is there: True when this call wrote it."""
    doc = {
        "format": CACHE_FORMAT,
        "key": step.key,
        "stage": step.inputs.stage,
        "inputs": step.inputs.as_json(),
        "outputs": {name: ref.model_dump(exclude_defaults=True) | {"format": ref.format}
                    for name, ref in sorted(outputs.items())},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "runner_version": runner_version,
    }
    CacheEntryDoc.model_validate(doc)  # never write what a reader would refuse
    return store.create(entry_path(step.inputs.stage, step.key),
                        canonical_json(sign_document(doc)))


def read_entry(store: ArtifactStore, stage: str, key: str, *,
               allow_unsigned: bool = False) -> CacheEntryDoc | None:
    """The entry of ``key`` for ``stage``, verified; None when there is none."""
    rel = entry_path(stage, key)
    try:
        data = store.read_bytes(rel)
    except ArtifactError as exc:
        if exc.missing:
            return None
        raise
    return _parse(store, rel, data, allow_unsigned=allow_unsigned, stage=stage, key=key)


def _parse(store: ArtifactStore, rel: str, data: bytes, *, allow_unsigned: bool,
           stage: str | None, key: str) -> CacheEntryDoc:
    where = store.url_of(rel)
    raw = parse_document(data, where=where, allow_unsigned=allow_unsigned)
    try:
        doc = CacheEntryDoc.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise IntegrityError(f"{where}: {loc}: {first['msg']}", url=where) from exc
    except RecursionError:
        raise IntegrityError(f"{where}: nested too deeply", url=where) from None
    if doc.key != key or (stage is not None and doc.stage != stage) \
            or entry_path(doc.stage, doc.key) != rel:
        raise IntegrityError(f"{where} is the entry of {doc.stage[:80]!r} key "
                             f"{doc.key[:16]}..., not of this place (moved or copied)",
                             url=where)
    return doc


@dataclass(frozen=True)
class EntryListing:
    """An entry found on the store: its document, or why it cannot be read."""

    path: str
    doc: CacheEntryDoc | None
    problem: str = ""


def list_entries(store: ArtifactStore, *, stage: str | None = None,
                 allow_unsigned: bool = False) -> Iterator[EntryListing]:
    """Every entry (of ``stage`` only, when given), in folder and key order."""
    folders = [_folder(stage)] if stage is not None else store.listdir(CACHE_DIR)
    for folder in folders:
        if not _FOLDER.fullmatch(folder):
            continue
        for name in store.listdir(f"{CACHE_DIR}/{folder}"):
            key = name.removesuffix(".json")
            if not (name.endswith(".json") and _KEY.fullmatch(key)):
                continue  # a writer's temporary file, or not ours
            rel = f"{CACHE_DIR}/{folder}/{name}"
            try:
                doc = _parse(store, rel, store.read_bytes(rel), allow_unsigned=allow_unsigned,
                             stage=None, key=key)
            except ArtifactError as exc:
                yield EntryListing(rel, None, str(exc))
                continue
            if stage is None or doc.stage == stage:
                yield EntryListing(rel, doc)


def clear_entries(store: ArtifactStore, *, stage: str | None = None,
                  dry_run: bool = False) -> list[str]:
    """Delete the entries (of ``stage`` only, when given), the unreadable ones among
    them too (those in ``stage``'s folder: what a run of it would fail to read); the
    objects they named go at the next sweep. The paths deleted."""
    gone = [e.path for e in list_entries(store, stage=stage)]
    if not dry_run:
        for rel in gone:
            store.delete(rel)
    return gone


def referenced_objects(store: ArtifactStore, *, allow_unsigned: bool = False,
                       excluding: Collection[str] = ()) -> set[str]:
    """Every object digest a readable cache entry names (for the object sweep), but
    the entries at the paths ``excluding`` (a dry run of clearing them)."""
    out: set[str] = set()
    for listing in list_entries(store, allow_unsigned=allow_unsigned):
        if listing.doc is not None and listing.path not in excluding:
            out |= listing.doc.objects()
        else:
            log.warning("%s: %s (its objects are not kept by it)", listing.path,
                        listing.problem)
    return out
