"""The run journal: one signed line per committed checkpoint, appended as the run goes.

run.json is written when a run starts and ends (and now and then between); the
checkpoints committed in between are lines appended to ``runs/<RUN_ID>/journal.jsonl``,
so the cost of recording a checkpoint does not grow with the run::

    {"journal": 1, "run_id": "...", "nonce": "...", "mac": "..."}        the header
    {"seq": 3, "dir": "steps/003-x", "name": "x", "path": "...", "kind": "step",
     "synced": 2, "mac": "..."}
    {"seq": 4, ..., "context_type": "m:C", "fields": {...}, "synced": 3, "mac": "..."}

The second form is an inline checkpoint (:class:`~runner.artifacts.documents.CheckpointRef`):
its line, signed like any other, is all of it. After another inline main-line
checkpoint, it carries only what changed since (``"base": 3, "changed": {...}``
instead of ``fields``), which :func:`runner.artifacts.reading.read_run` resolves.
A line is its body's canonical JSON (the bytes its mac is over) with ``mac`` added
last.

Every line is chained to the one before it: the header's ``mac`` is the HMAC of its
canonical JSON; a line's is the HMAC of the previous ``mac`` and its own canonical
JSON (:mod:`runner.artifacts.signing`'s key). So a line cannot be edited, moved,
dropped from the middle or taken from another run's journal. run.json names the
journal it goes with (``"journal": nonce``): a journal with another nonce is the
stale one of an earlier attempt, already folded into run.json, and is ignored.

A process killed while appending leaves a torn last line (no newline): it is
ignored, as the checkpoint it was recording is not committed. A complete line that
does not parse, verify or type is refused (:class:`IntegrityError`).

Lines are written without fsync (:mod:`runner.artifacts.durability`): ``synced``
says up to which checkpoint seq the files, and the journal lines before, were
durable when the line was written. A machine that stopped can leave the journal
a shorter prefix (a torn line at its end, as above) and the checkpoints after the
last ``synced`` with files that never reached the disk; a resume checks those.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from runner.artifacts.documents import CheckpointRef, check_confined
from runner.artifacts.fileio import Appender
from runner.artifacts.layout import RunPaths
from runner.artifacts.signing import SigningKey, canonical_json, load_key
from runner.artifacts.store import ArtifactStore
from runner.errors import ArtifactError, IntegrityError

__all__ = ["JournalState", "JournalWriter", "read_journal", "read_journal_state",
           "resolve_bases"]

log = logging.getLogger("runner.artifacts")

FORMAT = 1
_MAC = "mac"
_SYNCED = "synced"


def _header_mac(key: SigningKey, body: Mapping[str, Any]) -> str:
    return key.mac(b"runner-journal\n" + canonical_json(dict(body)))


def _line_mac(key: SigningKey, previous: str, body: Mapping[str, Any]) -> str:
    return key.mac(previous.encode() + b"\n" + canonical_json(dict(body)))


def _signed_line(key: SigningKey, previous: str | None, body: Mapping[str, Any]
                 ) -> tuple[str, bytes]:
    """A line's mac (the header's when ``previous`` is None) and the line: its
    canonical JSON, which the mac is over, with the mac as the last key (one
    encoding of the body, not two)."""
    canonical = canonical_json(dict(body))
    prefix = b"runner-journal\n" if previous is None else previous.encode() + b"\n"
    mac = key.mac(prefix + canonical)
    return mac, canonical[:-1] + b',"' + _MAC.encode() + b'":"' + mac.encode() + b'"}\n'


class JournalWriter:
    """Appends checkpoint lines to one run's journal (one writer: the lease holder).

    :meth:`start` replaces any journal there with a fresh header; :meth:`append`
    adds lines in one write. Object stores have no append: there the whole
    journal (kept in memory) is written again, once per :meth:`append` call, which
    the checkpoint writer makes once per batch of commits.
    """

    def __init__(self, store: ArtifactStore, run_id: str, *,
                 key: SigningKey | None = None) -> None:
        self.store = store
        self.paths = RunPaths(run_id)
        self.key = key or load_key()
        self.nonce = secrets.token_hex(8)
        self._previous = ""
        self._content = bytearray()
        self._appender: Appender | None = None

    def start(self) -> None:
        body = {"journal": FORMAT, "run_id": self.paths.run_id, "nonce": self.nonce}
        self._previous, line = _signed_line(self.key, None, body)
        self._content = bytearray(line)
        self.store.write_bytes(self.paths.journal_file, line)
        if self.store.local:  # appended to from now on: the file stays open
            self.close()
            self._appender = self.store.appender(self.paths.journal_file)
            self._content = bytearray()  # only object stores rewrite it whole

    def append(self, entries: Iterable[Mapping[str, Any]], *, durable: bool = True) -> None:
        lines = bytearray()
        for entry in entries:
            body = {k: v for k, v in entry.items() if k != _MAC}
            self._previous, line = _signed_line(self.key, self._previous, body)
            lines += line
        if not lines:
            return
        if self.store.local:
            self.store.append_bytes(self.paths.journal_file, bytes(lines), durable=durable,
                                    into=self._appender)
        else:
            self._content += lines
            self.store.write_bytes(self.paths.journal_file, bytes(self._content))

    def close(self) -> None:
        """Close the journal file kept open (appending again reopens nothing: call
        :meth:`start` for a new journal)."""
        if self._appender is not None:
            self._appender.close()
            self._appender = None


@dataclass(frozen=True)
class JournalState:
    """What a journal records: its checkpoints, and the highest seq of them known
    durable when its last line was written (0: none; see the module docstring)."""

    checkpoints: list[CheckpointRef]
    synced: int = 0


def read_journal(store: ArtifactStore, run_id: str, nonce: str, *,
                 allow_unsigned: bool = False) -> list[CheckpointRef]:
    """The checkpoints ``run_id``'s journal ``nonce`` records, verified, typed and
    confined to the run; [] when it is missing, empty or an earlier attempt's."""
    return read_journal_state(store, run_id, nonce, allow_unsigned=allow_unsigned).checkpoints


def read_journal_state(store: ArtifactStore, run_id: str, nonce: str, *,
                       allow_unsigned: bool = False) -> JournalState:
    """:func:`read_journal`, with the journal's ``synced`` mark."""
    paths = RunPaths(run_id)
    where = store.url_of(paths.journal_file)
    empty = JournalState([])
    try:
        data = store.read_bytes(paths.journal_file)
    except ArtifactError as exc:
        if exc.missing and not isinstance(exc, IntegrityError):
            return empty  # killed before the header landed
        raise
    *lines, tail = data.split(b"\n")
    if tail:
        log.warning("%s: ignoring a torn last line (the run stopped while appending it; "
                    "the checkpoint it recorded is not committed and runs again on resume)",
                    where)
    if not lines:
        return empty
    key = load_key()
    header = _parse(lines[0], where, 1)
    body = {k: v for k, v in header.items() if k != _MAC}
    previous = _mac_of(key, None, body, where, 1)
    _check(header.get(_MAC), previous, where, 1, allow_unsigned)
    if body.get("run_id") != run_id or body.get("journal") != FORMAT:
        raise IntegrityError(f"{where}: the journal of {str(body.get('run_id'))[:80]!r}, "
                             f"not of {run_id!r} (copied from another run)", url=where)
    if body.get("nonce") != nonce:
        log.debug("%s: an earlier attempt's journal, ignored", where)
        return empty
    out = []
    synced = 0
    for number, raw in enumerate(lines[1:], start=2):
        line = _parse(raw, where, number)
        body = {k: v for k, v in line.items() if k != _MAC}
        previous = _mac_of(key, previous, body, where, number)
        _check(line.get(_MAC), previous, where, number, allow_unsigned)
        previous = str(line.get(_MAC)) if allow_unsigned else previous
        mark = body.pop(_SYNCED, 0)
        if type(mark) is not int or not 0 <= mark <= 10**9:
            raise IntegrityError(f"{where}: line {number}: synced: not a checkpoint number",
                                 url=where)
        synced = max(synced, mark)
        try:
            ref = CheckpointRef.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "(line)"
            raise IntegrityError(f"{where}: line {number}: {loc}: {first['msg']}",
                                 url=where) from exc
        check_confined(paths, ref)
        out.append(ref)
    return JournalState(out, synced)


def resolve_bases(refs: list[CheckpointRef], *, where: str,
                  known: dict[int, CheckpointRef] | None = None) -> list[CheckpointRef]:
    """``refs`` in order, each written as a change (``base``) given its whole field map:
    its base's, with what changed. The base is an earlier inline checkpoint of the
    same record (``known``: those listed before ``refs``; completed in place), with
    the same field names; anything else is an :class:`IntegrityError` naming
    ``where``."""
    seen = {} if known is None else known
    out = []
    for written in refs:
        ref = written
        if written.base is not None and written.changed is not None:
            base = seen.get(written.base)
            if base is None or base.fields is None \
                    or not written.changed.keys() <= base.fields.keys():
                raise IntegrityError(
                    f"{where}: checkpoint {written.seq} ({written.dir[:80]}) is written as a "
                    f"change to checkpoint {written.base}, which is no earlier inline "
                    "checkpoint of this run with those fields", url=where)
            ref = written.model_copy(update={"fields": {**base.fields, **written.changed},
                                             "base": None, "changed": None})
        if ref.fields is not None:
            seen[ref.seq] = ref
        out.append(ref)
    return out


def _parse(raw: bytes, where: str, number: int) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise IntegrityError(f"{where}: line {number}: not valid JSON: {str(exc)[:200]}",
                             url=where) from exc
    if not isinstance(doc, dict):
        raise IntegrityError(f"{where}: line {number}: not a JSON object", url=where)
    return doc


def _mac_of(key: SigningKey, previous: str | None, body: Mapping[str, Any], where: str,
            number: int) -> str:
    """The header's mac (``previous`` None) or a line's, as the writer made it."""
    try:
        return _header_mac(key, body) if previous is None else _line_mac(key, previous, body)
    except ValueError:  # NaN or infinity: never written by runner
        raise IntegrityError(f"{where}: line {number} holds values runner never signs",
                             url=where) from None


def _check(got: Any, expected: str, where: str, number: int, allow_unsigned: bool) -> None:
    if isinstance(got, str) and hmac.compare_digest(got, expected):
        return
    problem = (f"{where}: line {number} does not verify (modified, moved, or signed with "
               "another key)")
    if allow_unsigned:
        log.warning("%s; reading it anyway (--allow-unsigned)", problem)
        return
    raise IntegrityError(f"{problem}; refusing to read it (--allow-unsigned reads an old "
                         "or foreign store you trust)", url=where)
