"""Checkpoints: every main-line step and every branch leaves the context on the store.

The layout is :mod:`runner.artifacts.layout`'s; run.json and each index.json are
signed documents (:mod:`runner.artifacts.documents`), and an index binds its run,
its folder, the field names, formats, the digests of their content-addressed objects
(:mod:`runner.artifacts.objects`: a frame any run stored before is stored once) and
the context type. A run's
status is running, succeeded, failed or interrupted (a signal stopped it). A field
unchanged since the previous checkpoint is referenced, not rewritten. run.json is
written when the run starts and ends (and every :data:`SAVE_EVERY` seconds); each
checkpoint committed in between is a line of the run's journal
(:mod:`runner.artifacts.journal`), which
:func:`~runner.artifacts.reading.read_run` folds in.

Small scalars (numbers, flags, None, short strings) are kept in the index itself
(format ``value``), not in files; a checkpoint whose changed fields are all such
values is *inline*: no folder, no index.json, its journal line (then its entry in
run.json) carries what its index would; after another inline main-line checkpoint,
only the entries that changed since (``base``, ``changed``: see
:class:`~runner.artifacts.documents.CheckpointRef`), so a record's size per step
does not grow with the context's fields. A long run of small steps thus costs one
appended line per step, written on the step's own thread when nothing else is
being written (:mod:`runner.artifacts.checkpoint_write`).

A checkpoint is committed once it is written, and made durable (fsync) in the
background, in batches: a killed process loses no committed checkpoint, a machine
that stops may lose the last few milliseconds of them, which a resume detects and
runs again (:mod:`runner.artifacts.durability` states the guarantee).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.artifacts.checkpoint_write import CheckpointWriting, document_bytes, now
from runner.artifacts.codec import fits_inline
from runner.artifacts.documents import FORMAT, RunDoc
from runner.artifacts.durability import Lane, Syncer
from runner.artifacts.journal import JournalWriter
from runner.artifacts.layout import RunPaths
from runner.artifacts.reading import read_run
from runner.artifacts.signing import SigningKey, load_key, sign_document
from runner.artifacts.store import ArtifactStore
from runner.context import fork_value, values_equal
from runner.errors import ArtifactError, RunInterruptedError
from runner.orchestration.graph import outline
from runner.orchestration.hooks import RunHook
from runner.orchestration.plan import Branch, ParallelGroup, Plan
from runner.orchestration.records import RunInfo, RunResult, StepRecord

__all__ = ["CheckpointHook"]

SAVE_EVERY = 30.0
"""Seconds between two writes of run.json while a run goes on (its journal in between)."""


def _type_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


@dataclass
class _Kept:
    value: Any
    entry: dict[str, Any]



@dataclass
class CheckpointHook(CheckpointWriting, RunHook):
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
    partial: dict[str, Any] | None = None
    """A partial run's origin run and checkpoint, from and to steps (run.json ``partial``)."""
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
    _queued: list[tuple[dict[str, Any], list[str], dict[str, Any], dict[str, Any]]] = field(
        default_factory=list)
    """Checkpoints written whose journal lines wait for the next commit's write (the
    commit thread's; each with its files, its event and its fields)."""
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
        started_now = now()
        self._doc = {
            "format": FORMAT, "run_id": run.run_id, "pipeline": run.pipeline,
            "trace_id": run.trace_id, "executor": run.executor,
            "manifest_digest": self.manifest_digest, "status": "running",
            "started": started or started_now, "attempt_started": started_now,
            "resumed_after": self.completed[-1] if self.completed else None,
            "attempts": (previous.attempts if previous else 0) + 1,
            "history": _history(previous),
            "ended": None, "error": None, "plan": outline(plan),
        }
        if self.partial is not None:
            self._doc["partial"] = dict(self.partial)
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
            self._doc.update(status=status, ended=now(), journal=None)  # all in run.json
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
            self._doc.update(status="interrupted", ended=now(),
                             error={"type": type(error).__name__, "message": str(error)})
        self._save()

    def _save(self) -> None:
        """run.json, once every checkpoint it lists is durable."""
        if self._syncer is not None:
            self._syncer.barrier()
        with self._saving:  # the last status set is the last one written
            with self._lock:
                self._doc.update(completed=list(self.completed),
                                 checkpoints=list(self.checkpoints), updated=now())
                doc = dict(self._doc)
            self._saved = time.monotonic()
            data = document_bytes(sign_document(doc, key=self._key, plain=True))
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
        self._checkpoint(run, record.name, record.path, "step", context,
                         cached=record.status == "cached", restored=record.restored)

    def on_branch_end(self, run: RunInfo, branch: Branch, context: Any | None) -> None:
        if context is not None:
            self._checkpoint(run, f"branch-{branch.label}", branch.path, "branch", context)

    def on_group_end(self, run: RunInfo, group: ParallelGroup, context: Any | None) -> None:
        if context is not None and group.path in self._main:
            self._checkpoint(run, "merge", group.path, "step", context)

    def _checkpoint(self, run: RunInfo, name: str, path: str, kind: str, ctx: Any, *,
                    cached: bool = False,
                    restored: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._raise_pending()
        with self._lock:  # branches may end at once on the threads executor
            self._seq += 1
            step_dir = RunPaths.new_step_dir(self._seq, name)
            fields, todo, written = self._fields(ctx, kind, restored or {})
            meta: dict[str, Any] = {"seq": self._seq, "dir": step_dir, "name": name,
                                    "path": path, "kind": kind}
            if cached:
                meta["cached"] = True
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

    def _fields(self, ctx: Any, kind: str, restored: Mapping[str, Mapping[str, Any]],
                ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        """The checkpoint's field entries; the fields to encode and write (value, entry to
        fill); the small values written inline. A field unchanged since the last
        checkpoint is a reference to its entry; one a cached step set from a stored
        object (``restored``) names that object: no encoding, no write."""
        fields: dict[str, Any] = {}
        todo: dict[str, Any] = {}
        written: list[str] = []
        for fname, value in getattr(ctx, "__dict__", {"value": ctx}).items():
            kept = self._last.get(fname)
            if kept is not None and values_equal(value, kept.value):
                fields[fname] = kept.entry  # unchanged: a reference, not a rewrite
                continue
            frozen = fork_value(value)  # what the file will hold, whatever runs next
            entry: dict[str, Any]
            if fname in restored:
                entry = dict(restored[fname])  # the object it was read from
            elif fits_inline(frozen):
                entry = {"format": "value", "value": frozen}
                written.append(fname)
            else:
                entry = {}
                todo[fname] = (frozen, entry)
            fields[fname] = entry
            if kind == "step":
                self._last[fname] = _Kept(frozen, entry)
        return fields, todo, written

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
