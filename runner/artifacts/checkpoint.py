"""Checkpoints: every main-line step and every branch leaves the context on the store.

The layout is :mod:`runner.artifacts.layout`'s; run.json and each index.json are
signed documents (:mod:`runner.artifacts.documents`), and an index binds its run,
its folder, the field names, formats, files, sha256 and the context type. A run's
status is running, succeeded, failed or interrupted (a signal stopped it). A field
unchanged since the previous checkpoint is referenced, not rewritten. run.json is
written when the run starts and ends (and every :data:`SAVE_EVERY` seconds); each
checkpoint committed in between is a line of the run's journal
(:mod:`runner.artifacts.journal`), which :func:`read_run` folds in.

Small scalars (numbers, flags, None, short strings) are kept in the index itself
(format ``value``), not in files; a checkpoint whose changed fields are all such
values is *inline*: no folder, no index.json, its journal line (then its entry in
run.json) carries what its index would; after another inline main-line checkpoint,
only the entries that changed since (``base``, ``changed``: see
:class:`~runner.artifacts.documents.CheckpointRef`), so a record's size per step
does not grow with the context's fields. A long run of small steps thus costs one
appended line per step, written on the step's own thread when nothing else is
being written (:meth:`CheckpointHook._record_inline`).

A checkpoint is committed once it is written, and made durable (fsync) in the
background, in batches: a killed process loses no committed checkpoint, a machine
that stops may lose the last few milliseconds of them, which a resume detects and
runs again (:mod:`runner.artifacts.durability` states the guarantee).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runner.artifacts.codec import Encoded, decode, encode, fits_inline
from runner.artifacts.documents import (
    FORMAT,
    CheckpointRef,
    FieldEntry,
    IndexDoc,
    RunDoc,
    read_index_doc,
    read_run_doc,
)
from runner.artifacts.durability import Lane, Syncer
from runner.artifacts.journal import JournalWriter, read_journal_state, resolve_bases
from runner.artifacts.layout import RunPaths
from runner.artifacts.signing import SigningKey, load_key, sign_document
from runner.artifacts.store import ArtifactStore
from runner.context import fork_value, values_equal
from runner.digest import digest_matches
from runner.errors import ArtifactError, IntegrityError, RunInterruptedError
from runner.orchestration.graph import outline
from runner.orchestration.hooks import RunHook
from runner.orchestration.plan import Branch, ParallelGroup, Plan
from runner.orchestration.records import RunInfo, RunResult, StepRecord

__all__ = ["FORMAT", "CheckpointHook", "field_binding", "load_checkpoint", "load_field",
           "read_index", "read_run"]

log = logging.getLogger("runner.artifacts")

SAVE_EVERY = 30.0
"""Seconds between two writes of run.json while a run goes on (its journal in between)."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


_ENCODE = json.JSONEncoder(separators=(", ", ": ")).encode  # the C encoder


def _document_bytes(doc: Mapping[str, Any]) -> bytes:
    """A document as JSON with a key, a list item or a field per line: as readable
    as ``indent=2`` without its pure-Python encoder (ten times slower on the
    checkpoint list of a long run's run.json)."""
    lines = []
    for key, value in doc.items():
        if isinstance(value, dict) and value:
            items, ends = [f"{_ENCODE(k)}: {_ENCODE(v)}" for k, v in value.items()], "{}"
        elif isinstance(value, list) and value:
            items, ends = [_ENCODE(v) for v in value], "[]"
        else:
            lines.append(f"  {_ENCODE(key)}: {_ENCODE(value)}")
            continue
        body = ",\n    ".join(items)
        lines.append(f"  {_ENCODE(key)}: {ends[0]}\n    {body}\n  {ends[1]}")
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode()


def _type_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


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
    """What a field's pickle is signed for: this run, this file (relative to the run)."""
    return {"kind": "field", "run_id": run_id, "file": file}


def load_field(store: ArtifactStore, run_id: str, entry: FieldEntry, *,
               allow_unsigned: bool = False) -> Any:
    """One field of a checkpoint, its sha256 checked before it is decoded (an inline
    value: as its verified record holds it)."""
    if entry.inline:
        return copy.deepcopy(entry.value)
    rel = RunPaths(run_id).member(entry.file)
    data = store.read_bytes(rel)
    where = store.url_of(rel)
    if not digest_matches(data, entry.sha256):
        raise IntegrityError(f"{where}: sha256 does not match the checkpoint index "
                             "(corrupted or modified)", url=where)
    return decode(entry.format, data, where=where, binding=field_binding(run_id, entry.file),
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
    values = {name: load_field(store, run_id, entry, allow_unsigned=allow_unsigned)
              for name, entry in index.fields.items()}
    return ctype.model_construct(None, **values)


@dataclass
class _Kept:
    value: Any
    entry: dict[str, Any]


@dataclass
class CheckpointHook(RunHook):
    """Writes a checkpoint after every main-line step and every branch, and run.json.

    Writing happens on background threads while the next step runs: one encodes
    and writes the field files, the next writes the index and commits the
    checkpoint with one line appended to the run's journal (instead of rewriting
    run.json: the cost of a checkpoint does not grow with the run), and a syncer
    makes what they wrote durable in batches (:mod:`runner.artifacts.durability`:
    a killed process loses no committed checkpoint; a machine that stops may
    lose the last few milliseconds of them, which a resume detects and redoes).
    All keep order. The values are copy-on-write forks taken when the step
    ended, so the next stage cannot change them. A checkpoint counts as done
    (``completed`` in :func:`read_run`) once its files, index and journal line
    are written; run.json lists only durable ones. A write error fails the run
    at the next step boundary, and the last main-line step waits for its
    checkpoint, so a run never reports success with a checkpoint missing.
    """

    store: ArtifactStore
    plan: Plan
    manifest_digest: str = ""
    completed: list[str] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    background: bool = True
    allow_unsigned: bool = False
    """Resume from a run.json that does not verify (an old or foreign store), warning."""
    listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    """Called (from the writer threads) with each checkpoint write once it is done or
    failed: op, name, path, kind, dir, url, bytes, rows, fields_written,
    fields_referenced, start, end (epoch seconds), error."""
    _last: dict[str, _Kept] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _saving: threading.Lock = field(default_factory=threading.Lock)
    _doc: dict[str, Any] = field(default_factory=dict)
    _main: list[str] = field(default_factory=list)
    _main_set: frozenset[str] = frozenset()
    _seq: int = 0
    _journal: JournalWriter | None = None
    _unjournaled: list[dict[str, Any]] = field(default_factory=list)
    _saved: float = 0.0
    _syncer: Syncer | None = None
    _committer: Lane = field(init=False)
    _encoder: Lane = field(init=False)
    _held: list[tuple[dict[str, Any], dict[str, Any]]] | None = None
    """Inline checkpoints waiting, in order, for the writer threads to reach them."""
    _key: SigningKey | None = None
    """Loaded when the run starts, once: finding the key file costs more than signing."""
    _base: tuple[int, str, dict[str, Any]] | None = None
    """The last main-line checkpoint, when inline: its seq, context type and fields.
    An inline checkpoint with the same field names is recorded as its changes."""

    def __post_init__(self) -> None:
        self._main = [s.path for s in self.plan.main_line()]
        self._main_set = frozenset(self._main)
        self._committer = Lane("runner-checkpoint-commit")
        # files fully written are still committed after a later write fails; nothing
        # new is written once a commit has failed
        self._encoder = Lane("runner-checkpoint-encode", watch=self._committer)

    # ------------------------------------------------------------ run.json

    def on_run_start(self, run: RunInfo, plan: Plan, context: Any) -> None:
        self._key = load_key()
        paths = RunPaths(run.run_id)
        previous = (read_run(self.store, run.run_id, allow_unsigned=self.allow_unsigned)
                    if self.store.exists(paths.run_file) else None)
        kept = previous.checkpoints if self.completed and previous else []
        if kept:  # the resume drops main-line checkpoints a stopped machine lost
            anchor = max((c.seq for c in kept if c.kind == "step"
                          and c.path == self.completed[-1]), default=0)
            lost = min((c.seq for c in kept if c.kind == "step" and c.seq > anchor),
                       default=None)
            kept = [c for c in kept if lost is None or c.seq < lost]
        self.checkpoints = [c.as_written() for c in kept]
        self._seq = max((c.seq for c in kept), default=0)
        started = previous.started if self.completed and previous else None
        now = _now()
        self._doc = {
            "format": FORMAT, "run_id": run.run_id, "pipeline": run.pipeline,
            "trace_id": run.trace_id, "executor": run.executor,
            "manifest_digest": self.manifest_digest, "status": "running",
            "started": started or now, "attempt_started": now,
            "resumed_after": self.completed[-1] if self.completed else None,
            "attempts": (previous.attempts if previous else 0) + 1,
            "history": _history(previous),
            "ended": None, "error": None, "plan": outline(plan),
        }
        self._journal = JournalWriter(self.store, run.run_id, key=self._key)
        if self.store.local:  # object stores: a PUT that returned is durable
            self._syncer = Syncer(self.store.sync, last=paths.journal_file,
                                  sync_all=self.store.sync_many)
        self._doc["journal"] = self._journal.nonce
        self._save()  # first: until then a reader takes the journal there for a stale one
        self._journal.start()

    def on_run_end(self, run: RunInfo, result: RunResult | None,
                   error: BaseException | None) -> None:
        if not self._doc:
            return  # the run never started
        self.flush(raise_error=False)
        self._stop_writer()
        failure = error or self._error
        status = ("succeeded" if failure is None
                  else "interrupted" if _interrupted(error) else "failed")
        with self._lock:
            if self._doc["status"] == "interrupted" and status == "failed":
                status = "interrupted"  # aborted already: what it stopped is no failure
            self._doc.update(status=status, ended=_now(), journal=None)  # all in run.json
            if failure is not None:
                self._doc["error"] = {"type": type(failure).__name__, "message": str(failure)}
        try:
            self._save()
        except ArtifactError:
            if failure is None:
                raise

    def list_results(self, ref: dict[str, Any]) -> None:
        """List results.json (its file, sha256 and size) in run.json when the run ends
        (:class:`runner.artifacts.results.ResultsHook` calls it just before)."""
        with self._lock:
            self._doc["results"] = dict(ref)

    def on_run_abort(self, run: RunInfo, error: BaseException) -> None:
        """Record ``interrupted`` with the checkpoints committed so far, without
        waiting for those still being written (a later commit keeps the status)."""
        with self._lock:
            if self._doc.get("status") != "running":
                return  # never started, or ended already
            self._doc.update(status="interrupted", ended=_now(),
                             error={"type": type(error).__name__, "message": str(error)})
        self._save()

    def _save(self) -> None:
        """run.json, once every checkpoint it lists is durable."""
        if self._syncer is not None:
            self._syncer.barrier()
        with self._saving:  # the last status set is the last one written
            with self._lock:
                self._doc.update(completed=list(self.completed),
                                 checkpoints=list(self.checkpoints), updated=_now())
                doc = dict(self._doc)
            self._saved = time.monotonic()
            data = _document_bytes(sign_document(doc, key=self._key, plain=True))
            self.store.write_bytes(RunPaths(doc["run_id"]).run_file, data)

    def _record(self) -> None:
        """The commits not yet in the journal appended to it in one write; run.json
        again when it is older than :data:`SAVE_EVERY` seconds."""
        with self._lock:
            entries, self._unjournaled = self._unjournaled, []
        if self._journal is not None:
            self._journal.append(entries, durable=False)
        if time.monotonic() - self._saved > SAVE_EVERY:
            self._save()

    # ------------------------------------------------------------ checkpoints

    def on_step_end(self, run: RunInfo, record: StepRecord, context: Any | None) -> None:
        if context is None or record.branch is not None or record.path not in self._main_set:
            return
        self._checkpoint(run, record.name, record.path, "step", context)

    def on_branch_end(self, run: RunInfo, branch: Branch, context: Any | None) -> None:
        if context is not None:
            self._checkpoint(run, f"branch-{branch.label}", branch.path, "branch", context)

    def on_group_end(self, run: RunInfo, group: ParallelGroup, context: Any | None) -> None:
        if context is not None and group.path in self._main:
            self._checkpoint(run, "merge", group.path, "step", context)

    def _checkpoint(self, run: RunInfo, name: str, path: str, kind: str, ctx: Any) -> None:
        self._raise_pending()
        with self._lock:  # branches may end at once on the threads executor
            self._seq += 1
            step_dir = RunPaths.new_step_dir(self._seq, name)
            fields: dict[str, Any] = {}
            todo: dict[str, Any] = {}
            written: list[str] = []  # inline values among the fields written
            for fname, value in getattr(ctx, "__dict__", {"value": ctx}).items():
                kept = self._last.get(fname)
                if kept is not None and values_equal(value, kept.value):
                    fields[fname] = kept.entry  # unchanged: a reference, not a rewrite
                    continue
                frozen = fork_value(value)  # what the file will hold, whatever runs next
                entry: dict[str, Any]
                if fits_inline(frozen):
                    entry = {"format": "value", "value": frozen}
                    written.append(fname)
                else:
                    entry = {"file": ""}
                    todo[fname] = (frozen, entry)
                fields[fname] = entry
                if kind == "step":
                    self._last[fname] = _Kept(frozen, entry)
            meta: dict[str, Any] = {"seq": self._seq, "dir": step_dir, "name": name,
                                    "path": path, "kind": kind}
            ctype = _type_path(ctx)
            index = {"format": FORMAT, "run_id": run.run_id, "dir": step_dir, "name": name,
                     "path": path, "kind": kind, "context_type": ctype, "fields": fields}
            if not todo:  # no file to write: the journal line is the whole checkpoint
                meta.update(self._inline_fields(ctype, fields))
                if kind == "step":
                    self._base = (self._seq, ctype, fields)
            else:
                self._held = None  # inline checkpoints after this one wait for it
                if kind == "step":
                    self._base = None
        paths = RunPaths(run.run_id)
        written += todo
        event = {"op": "write", "name": name, "path": path, "kind": kind, "dir": step_dir,
                 "url": self.store.url_of(paths.journal_file if not todo
                                          else f"{paths.dir}/{step_dir}"),
                 "fields_written": sorted(written),
                 "fields_referenced": len(fields) - len(written), "start": time.time()}
        if not todo:
            self._record_inline(meta, event)
        else:
            job = functools.partial(self._write, run.run_id, step_dir, todo, index, meta,
                                    event)
            if self.background:
                self._submit(job)
            else:
                job()
        if path == self._main[-1] and kind == "step":
            self.flush()  # the last step: the run ends only once it is on the store

    def _inline_fields(self, context_type: str, fields: dict[str, Any]) -> dict[str, Any]:
        """What an inline checkpoint's record carries: its whole field map, or only
        the entries that differ from the last main-line checkpoint's when that one
        is inline with the same fields (an unchanged field's entry is that
        checkpoint's own object): a few bytes per small step, not the whole map."""
        base = self._base
        if base is None or base[1] != context_type or base[2].keys() != fields.keys():
            return {"context_type": context_type, "fields": fields}
        changed = {k: e for k, e in fields.items() if e is not base[2][k]}
        return {"context_type": context_type, "base": base[0], "changed": changed}

    def _write(self, run_id: str, step_dir: str, todo: dict[str, Any],
               index: dict[str, Any], meta: dict[str, Any], event: dict[str, Any]) -> None:
        """Encode and write the fields (not yet fsynced), then hand over to commit.

        In the background, a frame written natively is left under its temporary
        name: the commit thread hashes it (on the other core, while this thread
        encodes the next checkpoint) and only then gives it its name."""
        base = RunPaths(run_id).dir
        written: list[str] = []
        unhashed: list[tuple[str, str, dict[str, Any]]] = []  # (rel, temporary, entry)
        try:
            for fname, (value, entry) in todo.items():
                pickled = RunPaths.new_field_file(step_dir, fname, "pkl")
                enc = encode(value, binding=field_binding(run_id, pickled))
                rel = RunPaths.new_field_file(step_dir, fname, enc.suffix)
                entry.update(file=rel, format=enc.format, rows=enc.rows)
                if enc.format == "series":
                    entry["series_name"] = enc.series_name
                if self.background and enc.write_file is not None and self.store.local:
                    tmp = self.store.write_temp(f"{base}/{rel}", enc.write_file)
                    unhashed.append((f"{base}/{rel}", tmp, entry))
                else:
                    digest, size = self._write_field(f"{base}/{rel}", enc)
                    entry.update(sha256=digest, bytes=size)
                written.append(f"{base}/{rel}")
        except BaseException as exc:
            for _, tmp, _ in unhashed:
                self.store.discard_temp(tmp)
            self._tell(event, todo, exc)
            raise
        commit = functools.partial(self._commit, base, step_dir, written, index, meta,
                                   event, todo, unhashed)
        if self.background:
            self._committer.submit(commit)
        else:
            commit()

    def _write_field(self, rel: str, enc: Encoded) -> tuple[str, int]:
        """One field's file; its sha256 and size (the syncer makes it durable)."""
        if enc.write_file is not None and self.store.local:
            return self.store.write_local(rel, enc.write_file, durable=False)
        with self.store.open_atomic(rel, durable=False) as fh:
            enc.write(fh)
        return fh.sha256, fh.size

    def _commit(self, base: str, step_dir: str, written: list[str], index: dict[str, Any],
                meta: dict[str, Any], event: dict[str, Any], todo: dict[str, Any],
                unhashed: list[tuple[str, str, dict[str, Any]]]) -> None:
        """The fields still under a temporary name hashed and named, the index
        written, then the journal line: the checkpoint counts as done (an index on
        the store without its line is no checkpoint: a resume writes that folder
        again). Then the syncer makes them durable, with the fields, in its next
        batch; the line says up to where that was done already."""
        try:
            for i, (rel, tmp, entry) in enumerate(unhashed):
                try:
                    digest, size = self.store.publish_temp(rel, tmp, durable=False)
                except BaseException:
                    for _, later, _ in unhashed[i + 1:]:
                        self.store.discard_temp(later)
                    raise
                entry.update(sha256=digest, bytes=size)
            index["created"] = _now()
            index_rel = f"{base}/{step_dir}/index.json"
            self.store.write_bytes(index_rel, _document_bytes(sign_document(index, key=self._key)),
                                   durable=False)
            self._append([meta], [*written, index_rel])
        except BaseException as exc:
            self._tell(event, todo, exc)
            raise
        self._tell(event, todo, None)

    def _record_inline(self, meta: dict[str, Any], event: dict[str, Any]) -> None:
        """Commit a checkpoint with no file to write: its journal line (which carries
        its fields) is all of it. At once, on the calling thread, when nothing is
        being written for an earlier checkpoint (no hand-over to a thread per step);
        else held, with the next ones, until the writer threads reach them: then one
        journal write commits them all, in order. Only main-line steps, which never
        end at once, commit on the caller."""
        if not self.background:
            self._commit_inline([(meta, event)])
            return
        with self._lock:
            batch, new = self._held, False
            now = (batch is None and meta["kind"] == "step" and self._encoder.idle
                   and self._committer.idle)
            if not now:
                if batch is None:
                    batch, new = [], True
                    self._held = batch
                batch.append((meta, event))
        if now:
            self._raise_pending()  # the threads are idle: an error of theirs is set
            self._commit_inline([(meta, event)])
        elif new and batch is not None:
            commit = functools.partial(self._commit_held, batch)
            self._submit(functools.partial(self._committer.submit, commit))

    def _commit_held(self, batch: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        with self._lock:  # closed: later checkpoints start another batch
            if self._held is batch:
                self._held = None
        self._commit_inline(batch)

    def _commit_inline(self, batch: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        try:
            self._append([meta for meta, _ in batch], [])
        except BaseException as exc:
            for _, event in batch:
                self._tell(event, {}, exc)
            raise
        for _, event in batch:
            self._tell(event, {}, None)

    def _append(self, metas: list[dict[str, Any]], files: list[str]) -> None:
        """The checkpoints' journal lines, in one write: from then on they count as
        done. The syncer then makes ``files`` and the lines durable in its next
        round; each line says up to where that was done already."""
        syncer = self._syncer
        with self._lock:
            for meta in metas:
                self.checkpoints.append(meta)
                self._unjournaled.append(
                    {**meta, "synced": syncer.durable if syncer is not None else meta["seq"]})
                if meta["kind"] == "step":
                    self.completed.append(meta["path"])
        self._record()
        if syncer is not None:  # after the lines: a round syncs the journal last
            syncer.add(files, max(meta["seq"] for meta in metas))
            if not self.background:
                syncer.barrier()

    def _tell(self, event: dict[str, Any], todo: dict[str, Any],
              error: BaseException | None) -> None:
        if not self.listeners:
            return
        entries = [entry for _, entry in todo.values()]
        rows = [e["rows"] for e in entries if isinstance(e.get("rows"), int)]
        event = {**event, "end": time.time(),
                 "bytes": sum(int(e.get("bytes", 0)) for e in entries),
                 "rows": max(rows) if rows else None,
                 "error": f"{type(error).__name__}: {error}" if error is not None else None}
        for listener in self.listeners:
            try:
                listener(event)
            except Exception as exc:
                log.error("checkpoint listener %r failed: %s: %s", listener,
                          type(exc).__name__, exc)

    # ------------------------------------------------------------ the writer threads

    def _submit(self, job: Callable[[], None]) -> None:
        self._encoder.submit(job)

    def _stop_writer(self) -> None:
        self._encoder.stop()
        self._committer.stop()
        if self._syncer is not None:
            self._syncer.stop()
        if self._journal is not None:
            self._journal.close()

    def flush(self, *, raise_error: bool = True) -> None:
        """Wait until every checkpoint handed over so far is on the store."""
        self._encoder.join()
        self._committer.join()
        if raise_error:
            self._raise_pending()

    @property
    def _error(self) -> BaseException | None:
        return (self._encoder.error or self._committer.error
                or (self._syncer.error if self._syncer is not None else None))

    def _raise_pending(self) -> None:
        if self._error is not None:
            error = self._error
            raise ArtifactError(f"writing a checkpoint failed: {error}") from error


def _history(previous: RunDoc | None) -> list[dict[str, Any]]:
    """The earlier attempts of a run being resumed: those ``previous`` lists, and
    ``previous`` itself, the attempt that ended last."""
    if previous is None:
        return []
    last = {"attempt": previous.attempts, "status": previous.status,
            "started": previous.attempt_started or previous.started, "ended": previous.ended,
            "trace_id": previous.trace_id, "executor": previous.executor,
            "resumed_after": previous.resumed_after, "completed": len(previous.completed),
            "error": previous.error.model_dump() if previous.error else None}
    return [*(h.model_dump() for h in previous.history), last]


def _interrupted(error: BaseException | None) -> bool:
    """A run stopped on purpose (a signal, Ctrl-C), not one that failed."""
    return isinstance(error, RunInterruptedError | KeyboardInterrupt)
