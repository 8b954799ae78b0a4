"""Earlier attempts of a resumed run, kept beside the latest one.

A run's spans (``runs/<RUN_ID>/spans.jsonl``) and forensics
(``summaries/runs/<RUN_ID>/error.json``, ``error_context.pkl``) are the latest
attempt's. When ``--resume`` starts attempt N+1, attempt N's are moved aside, byte
for byte, under ``runs/<RUN_ID>/attempts/<N>/`` and ``summaries/runs/<RUN_ID>/attempts/<N>/``:
their signatures bind the run and the content, not the place, so they verify there
as they did before, and nothing is signed again (a damaged file is not laundered
by the move). So every attempt stays readable (``runner trace``, the report,
``runs show``) and an old error is never presented as the current one.

The move copies first and deletes after: a process killed in between leaves a
copy in both places, never none; readers drop the duplicate spans (same span id).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from runner.artifacts.layout import RunPaths
from runner.artifacts.spans import read_spans_bytes, spans_files
from runner.artifacts.store import ArtifactStore
from runner.errors import ArtifactError, IntegrityError

__all__ = ["AttemptSpans", "attempt_spans", "earlier_attempts", "read_attempt_error",
           "set_aside"]

log = logging.getLogger("runner.artifacts")

RUN_KIND = "run"


def set_aside(store: ArtifactStore, run_id: str, attempt: int) -> tuple[str, str] | None:
    """Move attempt ``attempt``'s spans and forensics under ``attempts/<attempt>/``;
    the (trace id, span id) of its run span, which the next attempt's links to
    (None: it left no spans)."""
    paths = RunPaths(run_id)
    spans_rel, sig_rel = spans_files(run_id, None)
    aside_spans, aside_sig = spans_files(run_id, attempt)
    moves = [(spans_rel, aside_spans), (sig_rel, aside_sig),
             (paths.error_info_file, paths.attempt_error_info_file(attempt)),
             (paths.error_context_file, paths.attempt_error_context_file(attempt))]
    link = None
    moved = []
    for src, dst in moves:
        if not store.exists(src):
            continue
        data = store.read_bytes(src)
        if src == spans_rel:
            link = _run_span(data)
        store.write_bytes(dst, data)
        moved.append(src)
    for src in moved:
        store.delete(src)
    if moved:
        log.info("run %s: attempt %d's spans and forensics moved to %s", run_id, attempt,
                 store.url_of(paths.attempts_dir, str(attempt)))
    return link


def _lines(data: bytes) -> list[Any]:
    """spans.jsonl bytes as JSON values, one a line (blank lines ignored)."""
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def _run_span(data: bytes) -> tuple[str, str] | None:
    """The ids of the run span in spans.jsonl bytes (None when there is none)."""
    try:
        spans = _lines(data)
    except (ValueError, RecursionError):
        return None
    for span in spans:
        attrs = span.get("attributes") if isinstance(span, dict) else None
        if isinstance(attrs, dict) and attrs.get("runner.kind") == RUN_KIND:
            trace_id, span_id = span.get("trace_id"), span.get("span_id")
            if isinstance(trace_id, str) and isinstance(span_id, str):
                return trace_id, span_id
    return None


def earlier_attempts(store: ArtifactStore, run_id: str) -> list[int]:
    """The attempts of ``run_id`` whose spans or forensics were moved aside, in order."""
    paths = RunPaths(run_id)
    names = {*store.listdir(paths.attempts_dir), *store.listdir(paths.attempts_forensics_dir)}
    return sorted(int(n) for n in names if n.isdigit() and 0 < len(n) <= 6 and int(n) > 0)


@dataclass
class AttemptSpans:
    """The spans of one attempt of a run."""

    attempt: int
    spans: list[dict[str, Any]] = field(default_factory=list)


def attempt_spans(store: ArtifactStore, run_id: str, *, latest: int,
                  allow_unsigned: bool = False) -> list[AttemptSpans]:
    """Every attempt's spans, oldest first, each span tagged ``runner.attempt``; the
    spans at the top of the run folder are attempt ``latest``'s (run.json's count).
    A span seen twice (a move that was cut short) is kept once."""
    found: list[AttemptSpans] = []
    seen: set[str] = set()
    for attempt in [*earlier_attempts(store, run_id), None]:
        rel = spans_files(run_id, attempt)[0]
        if not store.exists(rel):
            continue
        data = read_spans_bytes(store, run_id, allow_unsigned=allow_unsigned, attempt=attempt)
        try:
            spans = _lines(data)
        except (ValueError, RecursionError) as exc:
            raise IntegrityError(f"{store.url_of(rel)} is not valid JSON lines: {exc}",
                                 url=store.url_of(rel)) from exc
        if not all(isinstance(s, dict) for s in spans):
            raise IntegrityError(f"{store.url_of(rel)}: a line is not a JSON object",
                                 url=store.url_of(rel))
        number = attempt if attempt is not None else latest
        kept = []
        for span in spans:
            key = str(span.get("span_id"))
            if key in seen:
                continue
            seen.add(key)
            attrs = span.get("attributes")
            attrs = dict(attrs) if isinstance(attrs, dict) else {}
            attrs.setdefault("runner.attempt", number)
            kept.append({**span, "attributes": attrs})
        found.append(AttemptSpans(number, kept))
    return found


def read_attempt_error(store: ArtifactStore, run_id: str, attempt: int, *,
                       allow_unsigned: bool = False) -> dict[str, Any] | None:
    """The forensics (error.json) of an earlier attempt, or None when it left none."""
    from runner.artifacts.forensics import read_error_doc

    paths = RunPaths(run_id)
    if not store.exists(paths.attempt_error_info_file(attempt)):
        return None
    try:
        return read_error_doc(store, run_id, allow_unsigned=allow_unsigned,
                              attempt=attempt).model_dump(mode="json")
    except ArtifactError as exc:
        if isinstance(exc, IntegrityError):
            raise
        return None
