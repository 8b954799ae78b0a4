"""What a run came up with, kept beside its checkpoints: ``runs/<RUN_ID>/results.json``.

Written once, at the end of a successful run, for ``runner report`` to show
without unpickling anything: the final context's ``report()`` (the portfolio of
the shipped pipelines), each step's ``ctx.log`` messages, a summary of every
field of the final context (type, shape, the head of each frame) and the time
series its ``charts()`` names (the backtest's equity curve). run.json lists the
file with its sha256 (``results``), and run.json is signed, so a changed file is
detected.

The file is data from the store: :func:`read_results` never raises on it, it
returns what it could read or a note saying why nothing is shown.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields as dataclass_fields
from dataclasses import is_dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
import pandas as pd

from runner.artifacts.layout import RESULTS_FILE, RunPaths
from runner.artifacts.objects import ObjectStore, is_digest
from runner.artifacts.store import ArtifactStore
from runner.digest import digest_matches, sha256
from runner.errors import RunnerError
from runner.orchestration.hooks import RunHook

if TYPE_CHECKING:
    from runner.orchestration.plan import Branch, Plan
    from runner.orchestration.records import RunInfo, RunResult, StepRecord

__all__ = [
    "RESULTS_FORMAT",
    "ResultsHook",
    "build_results",
    "charts_object",
    "context_report",
    "field_summary",
    "read_results",
    "write_results",
]

log = logging.getLogger("runner.artifacts")

RESULTS_FORMAT = 1
HEAD_ROWS = 5
HEAD_COLUMNS = 8
MAX_FIELDS = 200
MAX_MESSAGES = 1000
MAX_TEXT = 4000
MAX_POINTS = 5000
CHARTS_INLINE = 4096
"""Charts larger than this (JSON bytes) are stored as an object of their own."""
MAX_BYTES = 20_000_000
"""A results.json larger than this is not read (a report stays small)."""
EARLIER = "(earlier attempt)"
"""The step name given to messages the context already held when a resumed run started."""


def _plain(value: Any) -> Any:
    """JSON-ready: non-finite floats become None, anything else unknown a string."""
    return json.loads(json.dumps(value, default=str), parse_constant=lambda _: None)


def context_report(context: Any) -> dict[str, Any] | None:
    """What the final context says about itself (``context.report()``), JSON-ready;
    None, with a note in the log, when the context's own ``report()`` fails (user
    code: the run succeeded all the same)."""
    report = getattr(context, "report", None)
    if not callable(report):
        return None
    try:
        doc = report()
        return _plain(doc) if isinstance(doc, Mapping) else None
    except Exception as exc:
        log.warning("note: %s.report() raised %s: %s; the run's results are not shown",
                    type(context).__name__, type(exc).__name__, exc, extra={"event": "note"})
        return None


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, pd.Timestamp):
        return value.isoformat() if value.time() != pd.Timestamp(0).time() \
            else f"{value:%Y-%m-%d}"
    return str(value)[:200]


def _label(value: Any) -> str:
    return " / ".join(_cell(v) for v in value) if isinstance(value, tuple) else _cell(value)


def _head(value: pd.DataFrame | pd.Series) -> dict[str, Any]:
    frame = value.to_frame() if isinstance(value, pd.Series) else value
    part = frame.iloc[:HEAD_ROWS, :HEAD_COLUMNS]
    return {
        "index": [str(n) for n in part.index.names if n is not None],
        "columns": [_label(c) for c in part.columns],
        "rows": [[_label(i), *(_cell(v) for v in row)]
                 for i, row in zip(_labels(part.index),
                                   part.itertuples(index=False, name=None), strict=True)],
        "more_columns": max(0, frame.shape[1] - HEAD_COLUMNS),
    }


def _labels(index: pd.Index) -> Iterable[Any]:
    """The labels of a few rows. A MultiIndex's tuples from its levels' values at those
    rows: iterating it converts each level whole (every date of a long panel) first."""
    if isinstance(index, pd.MultiIndex):
        return zip(*(index.get_level_values(k) for k in range(index.nlevels)), strict=True)
    return index


def _field_names(context: Any) -> list[str]:
    model_fields = getattr(type(context), "model_fields", None)
    if isinstance(model_fields, Mapping):
        return [str(n) for n in model_fields]
    if is_dataclass(context):
        return [f.name for f in dataclass_fields(context)]
    return [str(n) for n in vars(context)] if hasattr(context, "__dict__") else []


def _summary(name: str, value: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "type": type(value).__name__}
    if isinstance(value, pd.DataFrame | pd.Series):
        entry["shape"] = list(value.shape)
        if len(value):
            entry["head"] = _head(value)
    elif isinstance(value, list | tuple | dict | set):
        entry["shape"] = [len(value)]
        entry["value"] = _short(value)
    else:
        entry["value"] = _short(value)
    return entry


def field_summary(context: Any) -> list[dict[str, Any]]:
    """Every field of the final context: name, type, shape, and a head of each frame
    (its first rows and columns, as text) or a short text of the value."""
    out: list[dict[str, Any]] = []
    for name in _field_names(context)[:MAX_FIELDS]:
        value = getattr(context, name, None)
        try:
            out.append(_summary(name, value))
        except Exception as exc:  # a user type whose repr or len fails
            out.append({"name": name, "type": type(value).__name__,
                        "value": f"(cannot show it: {type(exc).__name__})"})
    return out


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 200 else text[:197] + "..."


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return round(number, 6) if math.isfinite(number) else None


def _charts(context: Any) -> dict[str, Any]:
    """The series of ``context.charts()``: per chart, ISO dates and float columns."""
    charts = getattr(context, "charts", None)
    if not callable(charts):
        return {}
    out: dict[str, Any] = {}
    for name, frame in (charts() or {}).items():
        if not isinstance(frame, pd.DataFrame) or frame.empty:
            continue
        step = max(1, math.ceil(len(frame) / MAX_POINTS))
        thin = frame.iloc[::step] if step == 1 or (len(frame) - 1) % step == 0 \
            else pd.concat([frame.iloc[::step], frame.iloc[-1:]])
        out[str(name)] = {
            "dates": _dates(thin.index),
            "columns": {str(c): _numbers(thin[c]) for c in thin.columns},
        }
    return out


_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}
"""A day in each unit a DatetimeIndex counts in."""


def _dates(index: pd.Index) -> list[str]:
    """Each label as :func:`_cell` writes a timestamp: a day when it is midnight."""
    if not _midnights(index):
        return [_cell(pd.Timestamp(d)) for d in index]
    if index.min().year >= 1000 and index.max().year <= 9999:  # numpy's day strings
        return np.datetime_as_string(index.to_numpy(), unit="D").tolist()  # type: ignore[no-any-return]
    return list(index.strftime("%Y-%m-%d"))  # daily data: one call, not one a date


def _midnights(index: pd.Index) -> TypeGuard[pd.DatetimeIndex]:
    """Whether ``index`` holds naive midnights only (and at least one)."""
    if not isinstance(index, pd.DatetimeIndex) or index.tz is not None or len(index) == 0 \
            or index.unit not in _DAY or index.hasnans:
        return False
    return bool((index.asi8 % _DAY[index.unit] == 0).all())


def _numbers(column: pd.Series) -> list[float | None]:
    """Each value as :func:`_number` writes it (a float column converted at once)."""
    if column.dtype.kind == "f":
        return [round(v, 6) if math.isfinite(v) else None for v in column.tolist()]
    return [_number(v) for v in column]


def build_results(context: Any, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The results document of a run's final context and its steps' messages."""
    return {
        "format": RESULTS_FORMAT,
        "report": context_report(context),
        "messages": messages,
        "fields": field_summary(context),
        "charts": _charts(context),
    }


def write_results(store: ArtifactStore, run_id: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    """Write results.json; the reference run.json lists (file, sha256, bytes).

    The charts (most of the file: a backtest's daily equity curve) are an object of
    their own (:mod:`runner.artifacts.objects`), named in the file by their sha256
    (``charts_object``): runs on unchanged data draw the same charts and store them once.
    """
    charts = doc.get("charts")
    if charts:
        data = _json(charts)
        if len(data) > CHARTS_INLINE:
            put = ObjectStore(store).put_bytes(data)
            doc = {**{k: v for k, v in doc.items() if k != "charts"},
                   "charts_object": {"object": put.digest, "bytes": put.size}}
    data = _json(doc)
    store.write_bytes(RunPaths(run_id).results_file, data)
    return {"file": RESULTS_FILE, "sha256": sha256(data), "bytes": len(data)}


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def charts_object(doc: Mapping[str, Any]) -> str | None:
    """The digest of the charts object a results document names (None: charts inline)."""
    named = doc.get("charts_object")
    digest = named.get("object") if isinstance(named, Mapping) else None
    return digest if is_digest(digest) else None


def _with_charts(store: ArtifactStore, doc: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``doc`` with the charts its ``charts_object`` names read in (checked against the
    digest), or without charts and a note saying why."""
    if "charts_object" not in doc:
        return doc, None
    digest = charts_object(doc)
    doc.pop("charts_object")
    if digest is None:
        return doc, "the charts' object name in results.json is not a sha256: not shown"
    try:
        charts = json.loads(ObjectStore(store).get_bytes(digest))
    except RunnerError as exc:
        return doc, f"the charts of results.json are not readable: {exc}"
    except (ValueError, RecursionError) as exc:
        return doc, f"the charts of results.json are not JSON ({exc}): not shown"
    doc["charts"] = charts
    return doc, None


def read_results(store: ArtifactStore, run_id: str, ref: Mapping[str, Any] | None
                 ) -> tuple[dict[str, Any] | None, str | None]:
    """The results of a run (None when it has none) and a note when they cannot be
    shown: missing, too large, changed since run.json listed them, not JSON, or not
    shaped as :func:`build_results` writes them. Never raises on the file's content."""
    if ref is None:
        return None, None
    rel = RunPaths(run_id).results_file
    try:
        data = store.read_bytes(rel, limit=MAX_BYTES + 1)
    except RunnerError as exc:
        return None, f"{RESULTS_FILE} listed in run.json but not readable: {exc}"
    if len(data) > MAX_BYTES:
        return None, f"{RESULTS_FILE} is larger than {MAX_BYTES:,} bytes: not shown"
    if not digest_matches(data, ref.get("sha256")):
        return None, (f"{RESULTS_FILE} does not match the sha256 run.json lists for it "
                      "(changed after the run): not shown")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        return None, f"{RESULTS_FILE} is not JSON ({exc}): not shown"
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT:
        return None, f"{RESULTS_FILE} is not a results document of format {RESULTS_FORMAT}"
    return _with_charts(store, doc)


class ResultsHook(RunHook):
    """Keeps each step's ``ctx.log`` messages and, when the run succeeds, writes
    results.json and hands its reference to ``on_written`` (the checkpoint hook,
    which lists it in run.json). Runs before the checkpoint hook ends the run.

    A step's messages are the lines of its context's audit trail past the main
    line's cursor that no step of its own branch, an enclosing or an enclosed one
    was given yet (so a merge adapter keeps its own lines, and two branches that
    log the same line each get it). A main-line step moves the cursor: each step
    costs the lines since, not the whole trail, so a long run stays linear.
    """

    def __init__(self, store: ArtifactStore, *,
                 on_written: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.store = store
        self.on_written = on_written
        self.messages: list[dict[str, Any]] = []
        self._cursor = 0  # the main line's trail up to here is attributed
        self._given: list[tuple[str, str]] = []  # (branch, line) given since the cursor
        self._lock = threading.Lock()
        self._kept = 0

    def on_run_start(self, run: RunInfo, plan: Plan, context: Any) -> None:
        self._take(EARLIER, "", None, context)  # a resumed run's context holds earlier steps'

    def on_step_end(self, run: RunInfo, record: StepRecord, context: Any | None) -> None:
        if context is not None:
            self._take(record.name, record.path, record.branch, context)

    def on_branch_end(self, run: RunInfo, branch: Branch, context: Any | None) -> None:
        if context is not None:  # a branch whose steps were not heard: what is left
            self._take(branch.label, branch.path, branch.path, context)

    @staticmethod
    def _related(a: str, b: str) -> bool:
        """One branch path is ``b`` or encloses it, or the other way round: their
        trails share what either gave (a fork inherits, a merge collects)."""
        short, long = (a, b) if len(a) <= len(b) else (b, a)
        return long == short or (long.startswith(short) and long[len(short)] in "[/:")

    def _take(self, name: str, path: str, branch: str | None, context: Any) -> None:
        """The lines of ``context``'s audit trail that no step was given yet."""
        trail = getattr(context, "audit_trail", None)
        if not isinstance(trail, list):
            return
        with self._lock:
            given = Counter(line for owner, line in self._given
                            if branch is None or self._related(owner, branch))
            new = []
            for line in map(str, trail[self._cursor:]):
                if given[line] > 0:
                    given[line] -= 1
                else:
                    new.append(line)
            if branch is None:  # the main line moves on: its trail so far is attributed
                self._cursor = max(self._cursor, len(trail))
                self._given = []
            else:
                self._given.extend((branch, line) for line in new)
            if new and self._kept < MAX_MESSAGES:
                self._kept += len(new)
                self.messages.append({"step": name, "path": path,
                                      "messages": [m[:MAX_TEXT] for m in new]})

    def on_run_end(self, run: RunInfo, result: RunResult | None,
                   error: BaseException | None) -> None:
        if result is None or error is not None:
            return
        self._take("(final context)", "", None, result.context)  # e.g. from another process
        doc = build_results(result.context, self.messages)
        result.report = doc["report"]  # the front door prints it: no second call
        ref = write_results(self.store, run.run_id, doc)
        if self.on_written is not None:
            self.on_written(ref)
