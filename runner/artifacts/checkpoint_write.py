"""Writing a checkpoint: its fields encoded and stored as objects, its index, its commit.

The part of :class:`~runner.artifacts.checkpoint.CheckpointHook` that runs on the
writer threads: one thread encodes each field and stores it as a content-addressed
object (:mod:`runner.artifacts.objects`: a frame equal to one any run stored before is
stored once; a frame written natively is left in a temporary file for the next
thread to hash and name), the next writes the index, which names the objects by
digest, and commits the checkpoint with its journal line; a checkpoint
with no file to write (*inline*) is committed with its line alone, on the step's
own thread when nothing is being written. Listeners hear of every write once it is
done or failed. A write error is kept and raised at the next step boundary.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from runner.artifacts.codec import Encoded, encode
from runner.artifacts.durability import Lane, Syncer
from runner.artifacts.journal import JournalWriter
from runner.artifacts.layout import RunPaths
from runner.artifacts.objects import ObjectRef, ObjectStore, object_binding, object_path
from runner.artifacts.signing import SigningKey, sign_document
from runner.artifacts.store import ArtifactStore
from runner.errors import ArtifactError

__all__ = ["CheckpointWriting", "document_bytes", "now"]

log = logging.getLogger("runner.artifacts")

Held = list[tuple[dict[str, Any], dict[str, Any]]]
"""Inline checkpoints waiting for the writer threads: (journal line, event) each."""


def now() -> str:
    """The time now, UTC, in ISO 8601: what the documents record."""
    return datetime.now(UTC).isoformat()


_ENCODE = json.JSONEncoder(separators=(", ", ": ")).encode  # the C encoder


def document_bytes(doc: Mapping[str, Any]) -> bytes:
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


def _stored(entry: dict[str, Any], put: ObjectRef) -> str:
    """Name ``put`` in the field's index ``entry``; the object's path on the store."""
    entry.update(object=put.digest, bytes=put.size)
    return object_path(put.digest)


class CheckpointWriting:
    """The writer threads of :class:`~runner.artifacts.checkpoint.CheckpointHook` and
    what runs on them; the hook owns the state below and commits each checkpoint's
    journal line (``_append``)."""

    store: ArtifactStore
    background: bool
    listeners: list[Callable[[dict[str, Any]], None]]
    _lock: threading.Lock
    _held: Held | None
    _key: SigningKey | None
    _syncer: Syncer | None
    _journal: JournalWriter | None
    _committer: Lane
    _encoder: Lane
    _queued: list[tuple[dict[str, Any], list[str], dict[str, Any], dict[str, Any]]]

    def _append(self, metas: list[dict[str, Any]], files: list[str]) -> None:
        raise NotImplementedError  # the hook's: the run's record is its own

    @functools.cached_property
    def _objects(self) -> ObjectStore:
        """One for the run: what it found young on an object store is not asked again."""
        return ObjectStore(self.store)

    def _write(self, run_id: str, step_dir: str, todo: dict[str, Any],
               index: dict[str, Any], meta: dict[str, Any], event: dict[str, Any]) -> None:
        """Encode the fields and store each as an object (not yet fsynced by the
        syncer), then hand over to commit.

        In the background, a frame written natively is left in a temporary file:
        the commit thread hashes it (on the other core, while this thread encodes the
        next checkpoint) and only then gives it its object's name."""
        written: list[str] = []  # the objects, for the syncer
        unhashed: list[tuple[str, dict[str, Any]]] = []  # (temporary file, entry)
        try:
            for fname, (value, entry) in todo.items():
                enc = encode(value, binding=object_binding(fname))
                entry.update(format=enc.format, rows=enc.rows)
                if enc.format == "series":
                    entry["series_name"] = enc.series_name
                if self.background and enc.write_file is not None and self.store.local:
                    name = f"{step_dir.removeprefix('steps/')}.{fname}.{enc.suffix}"
                    unhashed.append((self._objects.write_temp(enc.write_file, name=name),
                                     entry))
                    continue
                written.append(_stored(entry, self._put(enc)))
        except BaseException as exc:
            for tmp, _ in unhashed:
                self.store.discard_temp(tmp)
            self._tell(event, todo, exc)
            raise
        commit = functools.partial(self._commit, RunPaths(run_id).dir, step_dir, written,
                                   index, meta, event, todo, unhashed)
        if self.background:
            self._committer.submit(commit)
        else:
            commit()

    def _put(self, enc: Encoded) -> ObjectRef:
        """One field's object: written natively to a local file when the store is local
        (Arrow's own file, twice as fast), else its bytes put as they are."""
        if enc.write_file is not None and self.store.local:
            return self._objects.write_object(enc.write_file)
        return self._objects.put_bytes(enc.data)

    def _commit(self, base: str, step_dir: str, written: list[str], index: dict[str, Any],
                meta: dict[str, Any], event: dict[str, Any], todo: dict[str, Any],
                unhashed: list[tuple[str, dict[str, Any]]]) -> None:
        """The fields still in a temporary file hashed and given their object's name,
        the index written, then the journal line: the checkpoint counts as done (an
        index on the store without its line is no checkpoint: a resume writes that
        folder again). On an object store, when another commit waits on this thread,
        the line waits for it: that commit writes both lines, with one rewrite of the
        journal. Then the syncer makes them durable, with the objects, in its next
        batch; the line says up to where that was done already."""
        try:
            for i, (tmp, entry) in enumerate(unhashed):
                try:
                    written.append(_stored(entry, self._objects.put_file(tmp)))
                except BaseException:
                    for later, _ in unhashed[i + 1:]:
                        self.store.discard_temp(later)
                    raise
            index["created"] = now()
            index_rel = f"{base}/{step_dir}/index.json"
            self.store.write_bytes(index_rel, document_bytes(sign_document(index, key=self._key)),
                                   durable=False)
        except BaseException as exc:
            self._tell(event, todo, exc)
            self._commit_queued()  # the checkpoints held before it are whole: committed
            raise
        self._queued.append((meta, [*written, index_rel], event, todo))
        if not self.store.local and self._committer.waiting():
            return  # the next commit writes this line with its own: one journal write
        self._commit_queued()

    def _commit_queued(self) -> None:
        """The journal lines of the checkpoints queued, in one write (on an object store
        the journal is written whole each time): from then on they count as done."""
        queued, self._queued = self._queued, []
        if not queued:
            return
        try:
            self._append([meta for meta, *_ in queued],
                         [f for _, files, _, _ in queued for f in files])
        except BaseException as exc:
            for _, _, event, todo in queued:
                self._tell(event, todo, exc)
            raise
        for _, _, event, todo in queued:
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

    def _commit_held(self, batch: Held) -> None:
        with self._lock:  # closed: later checkpoints start another batch
            if self._held is batch:
                self._held = None
        self._commit_inline(batch)

    def _commit_inline(self, batch: Held) -> None:
        self._queued.extend((meta, [], event, {}) for meta, event in batch)
        self._commit_queued()

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
