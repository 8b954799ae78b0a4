"""Typed documents of the store (run.json, index.json, error.json) and their readers.

A reader gets the bytes, parses the JSON, verifies the embedded signature, then
validates the document against its model and checks that it names the place it
was found at (run id, step folder) and only paths inside its run. Whatever is
wrong (bad JSON, wrong types, missing keys, a path outside the run, a document
from another run) is one :class:`IntegrityError` naming the file: exit 2.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from runner.artifacts.layout import RunPaths
from runner.artifacts.signing import verify_document
from runner.artifacts.store import ArtifactStore
from runner.errors import IntegrityError

__all__ = [
    "FORMAT",
    "STATUSES",
    "AttemptRecord",
    "CheckpointRef",
    "FieldEntry",
    "IndexDoc",
    "PartialRef",
    "ResultsRef",
    "RunDoc",
    "SpansSignature",
    "check_confined",
    "parse_document",
    "read_document",
    "read_index_doc",
    "read_run_doc",
]

log = logging.getLogger("runner.artifacts")

FORMAT = 1
STATUSES = ("running", "succeeded", "failed", "interrupted")
MAX_PLAN_DEPTH = 128

M = TypeVar("M", bound=BaseModel)

Count = Annotated[int, Field(ge=0, le=2**53)]
Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Text = Annotated[str, Field(max_length=100_000)]


class _Doc(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, defer_build=True)


class PlanNode(_Doc):
    """One node of the plan outline kept in run.json (drawn by ``runner report``)."""

    kind: Text
    name: Text = ""
    path: Text = ""
    merge: Text | None = None
    children: list[PlanNode] = Field(default_factory=list)

    def depth(self) -> int:
        todo, deepest = [(self, 1)], 0
        while todo:
            node, level = todo.pop()
            deepest = max(deepest, level)
            todo.extend((child, level + 1) for child in node.children)
        return deepest


class RunErrorInfo(_Doc):
    type: Text = ""
    message: Text = ""


class AttemptRecord(_Doc):
    """An earlier attempt of a run, as run.json keeps it once a resume began another."""

    attempt: Annotated[int, Field(ge=1, le=999_999)]
    status: Literal["running", "succeeded", "failed", "interrupted"]
    started: Text | None = None
    ended: Text | None = None
    trace_id: Text | None = None
    executor: Text | None = None
    resumed_after: Text | None = None
    completed: Count = 0
    error: RunErrorInfo | None = None


class FieldEntry(_Doc):
    """One field of a checkpoint: the content-addressed object that holds it
    (``object``: its sha256, :mod:`runner.artifacts.objects`), format and size; or,
    format ``value``, the field's small JSON value itself (no object: the signed
    document or journal line that holds the entry holds the value). Runs written
    before objects name a ``file`` of the run (relative to it) and its ``sha256``."""

    file: Text = ""
    object: Digest | None = None
    format: Literal["parquet", "series", "json", "pickle", "value"]
    sha256: Digest | None = None
    bytes: Count = 0
    rows: Count | None = None
    series_name: Any = None
    value: Any = None

    @model_validator(mode="after")
    def _object_file_or_value(self) -> FieldEntry:
        if self.format == "value":
            if self.file or self.sha256 is not None or self.object is not None:
                raise ValueError("a value entry names no file and no object")
        elif self.object is not None:
            if self.file or self.sha256 not in (None, self.object):
                raise ValueError("an object entry names no file of its own")
        elif not self.file or self.sha256 is None:
            raise ValueError(f"a {self.format} entry needs its object, or its file and sha256")
        return self

    @property
    def inline(self) -> bool:
        return self.format == "value"

    @property
    def digest(self) -> str | None:
        """The sha256 of the stored bytes (the object's name, or an old file's checksum)."""
        return self.object or self.sha256

    def as_written(self) -> dict[str, Any]:
        """The entry as the checkpoint writer wrote it."""
        if self.inline:
            return {"format": "value", "value": self.value}
        out: dict[str, Any] = ({"object": self.object} if self.object is not None
                               else {"file": self.file, "sha256": self.sha256})
        out.update(format=self.format, rows=self.rows, bytes=self.bytes)
        if self.format == "series":
            out["series_name"] = self.series_name
        return out


FieldName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")]


Seq = Annotated[int, Field(ge=1, le=10**9)]


class CheckpointRef(_Doc):
    """A checkpoint as run.json (and the journal) lists it. An *inline* checkpoint,
    one whose changed fields are all small values, has no folder on the store: its
    ref carries what its index.json would (``context_type`` and ``fields``).

    As written, an inline ref may instead carry only what changed since an earlier
    inline checkpoint of the run: ``base`` (its seq) and ``changed`` (the entries
    that differ; same field names), so a long run of small steps records a few
    bytes per step, not its whole field map. :func:`~runner.artifacts.journal.resolve_bases` (in
    :func:`runner.artifacts.reading.read_run`) gives such a ref its ``fields``
    before anyone reads it. A reader that knows no ``base`` refuses the ref (it has
    a context type and no fields) rather than read a partial field map."""

    seq: Seq
    dir: Text
    name: Text
    path: Text
    kind: Literal["step", "branch"]
    context_type: Text | None = None
    fields: dict[FieldName, FieldEntry] | None = None
    base: Seq | None = None
    changed: dict[FieldName, FieldEntry] | None = None
    cached: bool = False
    """The step's outputs came from the step cache (its stage did not run)."""

    @model_validator(mode="after")
    def _whole_inline_index(self) -> CheckpointRef:
        if (self.base is None) != (self.changed is None):
            raise ValueError("a checkpoint written as a change names its base and what changed")
        if self.base is not None and (self.fields is not None or self.base >= self.seq):
            raise ValueError("a checkpoint written as a change has no fields of its own, "
                             "and its base is an earlier checkpoint")
        if (self.fields is None and self.changed is None) != (self.context_type is None):
            raise ValueError("an inline checkpoint names its context type and its fields")
        return self

    @property
    def inline(self) -> bool:
        return self.fields is not None or self.changed is not None

    def as_written(self) -> dict[str, Any]:
        """The ref as the checkpoint writer wrote it (a resume lists it again as is)."""
        out: dict[str, Any] = {"seq": self.seq, "dir": self.dir, "name": self.name,
                               "path": self.path, "kind": self.kind}
        if self.cached:
            out["cached"] = True
        if self.fields is not None:
            out.update(context_type=self.context_type,
                       fields={k: e.as_written() for k, e in self.fields.items()})
        return out

    def index(self, run_id: str) -> IndexDoc:
        """The index of an inline checkpoint (:attr:`inline`), as index.json would be."""
        if self.fields is None or self.context_type is None:
            raise ValueError(f"checkpoint {self.dir} is not inline: read its index.json")
        return IndexDoc(run_id=run_id, dir=self.dir, name=self.name, path=self.path,
                        kind=self.kind, context_type=self.context_type, fields=self.fields)


class IndexDoc(_Doc):
    """runs/<RUN_ID>/steps/<NNN>-<name>/index.json."""

    format: Literal[1] = 1
    run_id: Text
    dir: Text | None = None  # None only in indexes of older runners (unsigned)
    name: Text
    path: Text
    kind: Literal["step", "branch"]
    context_type: Text
    fields: dict[FieldName, FieldEntry]
    created: Text | None = None


class ResultsRef(_Doc):
    """run.json's entry for results.json (results.py): written at the end of a
    succeeded run; its sha256 ties the file to the signed run document."""

    file: Literal["results.json"]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    bytes: Count


class PartialRef(_Doc):
    """A partial run (``--from``/``--origin``, ``--to``): where it started and stopped."""

    origin: Text | None = None
    """The run whose checkpoint it started from."""
    checkpoint: Text | None = None
    """That checkpoint's folder in the origin run."""
    from_step: Text | None = None
    """The path of its first step (None: the pipeline's first)."""
    to_step: Text | None = None
    """The path of its last step (None: the pipeline's last)."""


class RunDoc(_Doc):
    """runs/<RUN_ID>/run.json."""

    format: Literal[1] = 1
    run_id: Text
    pipeline: Text
    trace_id: Text | None = None
    executor: Text | None = None
    manifest_digest: Text = ""
    status: Literal["running", "succeeded", "failed", "interrupted"]
    started: Text | None = None
    ended: Text | None = None
    updated: Text | None = None
    attempts: Count = 1
    error: RunErrorInfo | None = None
    plan: PlanNode | None = None
    completed: list[Text] = Field(default_factory=list)
    checkpoints: list[CheckpointRef] = Field(default_factory=list)
    attempt_started: Text | None = None
    """When the latest attempt started (``started`` is the first one's)."""
    resumed_after: Text | None = None
    """The step the latest attempt continued after (None: it ran from the start)."""
    history: Annotated[list[AttemptRecord], Field(max_length=10_000)] = Field(
        default_factory=list)
    """The earlier attempts, oldest first."""
    results: ResultsRef | None = None
    partial: PartialRef | None = None
    """Set for a run of part of the pipeline (``--from``/``--to``)."""
    journal: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = None
    """The nonce of the journal that records the checkpoints committed since this
    document was written (journal.py); None once the run has ended."""
    synced: Count | None = None
    """Set by :func:`~runner.artifacts.reading.read_run` (never in run.json):
    checkpoints with a higher seq were committed but not yet known durable when the
    journal was last written (a machine that stopped may have lost their files);
    None: every checkpoint listed is durable."""

    @model_validator(mode="after")
    def _shallow_plan(self) -> RunDoc:
        if self.plan is not None and self.plan.depth() > MAX_PLAN_DEPTH:
            raise ValueError(f"plan is nested deeper than {MAX_PLAN_DEPTH} levels")
        return self

    def last_main_checkpoint(self) -> CheckpointRef | None:
        steps = [c for c in self.checkpoints if c.kind == "step"]
        return steps[-1] if steps else None


class SpansSignature(_Doc):
    """spans.sig.json: binds spans.jsonl (by sha256) to its run."""

    run_id: Text
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


# ---------------------------------------------------------------- reading


def parse_document(data: bytes, *, where: str, allow_unsigned: bool = False
                   ) -> dict[str, Any]:
    """JSON bytes to a plain object, its signature verified (not yet typed)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, 5000 digits, deep
        raise IntegrityError(f"{where}: not valid JSON: {str(exc)[:200]}", url=where) from exc
    if not isinstance(doc, dict):
        raise IntegrityError(f"{where}: not a JSON object", url=where)
    return verify_document(doc, where=where, allow_unsigned=allow_unsigned)


def _typed(model: type[M], doc: dict[str, Any], where: str) -> M:
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(document)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise IntegrityError(f"{where}: {loc}: {first['msg']}{more}", url=where) from exc
    except RecursionError:
        raise IntegrityError(f"{where}: nested too deeply", url=where) from None


def _read(store: ArtifactStore, rel: str, *, allow_unsigned: bool) -> tuple[dict[str, Any], str]:
    where = store.url_of(rel)
    return parse_document(store.read_bytes(rel), where=where,
                          allow_unsigned=allow_unsigned), where


def read_document(store: ArtifactStore, rel: str, model: type[M], *,
                  allow_unsigned: bool = False) -> M:
    """The signed JSON document at ``rel``, verified and typed as ``model``."""
    raw, where = _read(store, rel, allow_unsigned=allow_unsigned)
    return _typed(model, raw, where)


def read_run_doc(store: ArtifactStore, run_id: str, *, allow_unsigned: bool = False) -> RunDoc:
    """run.json of ``run_id``: verified, typed, naming this run, its folders inside it."""
    paths = RunPaths(run_id)
    raw, where = _read(store, paths.run_file, allow_unsigned=allow_unsigned)
    doc = _typed(RunDoc, raw, where)
    if doc.run_id != run_id:
        raise IntegrityError(f"{where} belongs to run {doc.run_id[:80]!r}, not {run_id!r} "
                             "(copied from another run)", url=where)
    for ckpt in doc.checkpoints:
        check_confined(paths, ckpt)
    return doc


def check_confined(paths: RunPaths, ckpt: CheckpointRef) -> None:
    """A listed checkpoint names its folder, and an inline one only files, of its run
    (:class:`IntegrityError` otherwise)."""
    paths.step_dir(ckpt.dir)
    for entry in [*(ckpt.fields or {}).values(), *(ckpt.changed or {}).values()]:
        if entry.file:
            paths.member(entry.file)


def read_index_doc(store: ArtifactStore, run_id: str, step_dir: str, *,
                   allow_unsigned: bool = False) -> IndexDoc:
    """A checkpoint's index.json: verified, typed, bound to this run and folder."""
    paths = RunPaths(run_id)
    raw, where = _read(store, paths.index_file(step_dir), allow_unsigned=allow_unsigned)
    index = _typed(IndexDoc, raw, where)
    if index.run_id != run_id or index.dir not in (None, step_dir) \
            or (index.dir is None and not allow_unsigned):
        raise IntegrityError(f"{where} is the index of {index.run_id[:80]!r} "
                             f"{str(index.dir)[:80]}, not of this checkpoint (copied from "
                             "another run or step)", url=where)
    for entry in index.fields.values():
        if entry.file:
            paths.member(entry.file)
    return index
