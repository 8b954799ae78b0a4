"""A run as one self-contained HTML page: DAG, timeline, steps, artifacts and error.

The report is meant to be mailed, attached to a ticket or opened from an object
store years later, so it carries everything inline: CSS, SVG drawn in Python
(the DAG's layout is :mod:`runner.views.dag`, the timeline's
:mod:`runner.views.timeline`, both drawn at scale 1), no network reference, and one
small inline script that only switches the DAG between its full view and its
overview (the page reads whole without it). The Jinja2 template
``templates/report.html.j2`` only writes the geometry out, with autoescaping on,
since stage names and messages come from user code.

Inputs are the plain documents a run leaves behind: ``run.json``, the spans of
``spans.jsonl``, each checkpoint's ``index.json`` and the forensic ``error.json``.
Any of them may be partial: a run still running, an older run without a plan,
a run without spans.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, Template

from runner.telemetry.spans import SpanNode, span_tree
from runner.views.bounds import check_outline_depth
from runner.views.dag import layout_dag
from runner.views.results import build_results_view
from runner.views.timeline import (
    STEP_KINDS,
    TIMELINE_KINDS,
    Clock,
    layout_timeline,
    span_seconds,
)
from runner.views.trace import (
    format_bytes,
    format_duration,
    short_name,
    span_error,
    span_kind,
    span_pid,
    span_status,
)

__all__ = ["TIMELINE_KINDS", "outline_from_spans", "render_report"]


Node = Mapping[str, Any]
State = Callable[[str, str], tuple[str, Mapping[str, Any] | None]]


# ---------------------------------------------------------------- time


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _show_time(value: Any) -> str:
    parsed = _parse_time(value)
    if parsed is None:
        return str(value) if value else "—"
    return parsed.strftime("%Y-%m-%d %H:%M:%S") + (f" {parsed.tzname()}" if parsed.tzinfo else "")


# ---------------------------------------------------------------- status of plan nodes


def _plan_path(span: Mapping[str, Any]) -> str:
    """A span's plan path (a merge's ``<group>:merge`` is its group's)."""
    return str((span.get("attributes") or {}).get("runner.path") or "").removesuffix(":merge")


def _under(path: str, done: str) -> bool:
    return path == done or path.startswith((done + "[", done + "/"))


def _state_of(run: Mapping[str, Any], spans: Sequence[Mapping[str, Any]],
              error: Mapping[str, Any] | None) -> State:
    """How each plan node (kind, path) fared: its span if it has one, else what run.json says."""
    by_key: dict[tuple[str, str], Mapping[str, Any]] = {}
    for span in sorted(spans, key=lambda s: s.get("start_time_unix_nano") or 0):
        if _plan_path(span):
            by_key[span_kind(span), _plan_path(span)] = span  # a later attempt wins
    completed = [str(p) for p in run.get("completed") or ()] + [  # branches checkpoint too
        str(c["path"]) for c in run.get("checkpoints") or () if c.get("path")]
    cached = {str(c["path"]) for c in run.get("checkpoints") or ()
              if c.get("path") and c.get("cached")}
    failed_path = (error or {}).get("path")
    pending = "pending" if run.get("status") == "running" else "not-run"
    # completed yet absent from a resumed run's trace: restored from a checkpoint
    resumed = bool(spans) and int(run.get("attempts") or 1) > 1

    def state(kind: str, path: str) -> tuple[str, Mapping[str, Any] | None]:
        span = by_key.get((kind, path))
        if span is not None:
            return span_status(span), span
        if path in cached and not resumed:
            return "cached", None
        if any(_under(path, done) for done in completed):
            return ("skipped" if resumed else "succeeded"), None
        if path == failed_path and kind in STEP_KINDS:
            return "failed", None
        return pending, None

    return state


# ---------------------------------------------------------------- the DAG (runner.views.dag)


def outline_from_spans(spans: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """A plan outline rebuilt from the spans' nesting, for runs whose run.json has none."""
    roots = span_tree(spans)
    run = next((r for r in roots if span_kind(r.span) == "run"), None)
    if run is None:
        return None
    return {"kind": "pipeline", "name": short_name(run.span), "path": "",
            "children": list(_outline_children(run))}


def _outline_children(node: SpanNode) -> Iterator[dict[str, Any]]:
    for child in node.children:
        kind = span_kind(child.span)
        attrs = child.span.get("attributes") or {}
        base = {"kind": kind, "name": str(attrs.get("runner.stage") or short_name(child.span)),
                "path": _plan_path(child.span)}
        if kind in ("stage", "adapter"):
            yield base
        elif kind == "group":
            kids = list(_outline_children(child))
            merges = [s for s in child.children if span_kind(s.span) == "merge"]
            yield {**base, "merge": short_name(merges[0].span) if merges else "merge",
                   "name": short_name(child.span),
                   "children": [k for k in kids if k["kind"] == "branch"]}
        elif kind in ("pipeline", "branch"):
            yield {**base, "children": list(_outline_children(child))}


# ---------------------------------------------------------------- tables


def _steps(plan: Node | None, spans: Sequence[Mapping[str, Any]], state: State,
           clock: Clock | None) -> list[dict[str, str]]:
    """Stages, adapters and merges: those that ran in start order, then the rest in plan order."""
    rows = []
    ran = sorted((s for s in spans if span_kind(s) in STEP_KINDS),
                 key=lambda s: s.get("start_time_unix_nano") or 0)
    planned = list(_plan_steps(plan))
    branches = {(kind, path): branch for kind, _, path, branch in planned}
    seen = set()
    for span in ran:
        attrs = span.get("attributes") or {}
        seen.add((span_kind(span), _plan_path(span)))
        pid, node = span_pid(span), attrs.get("runner.worker.node")
        rows.append({
            "path": str(attrs.get("runner.path") or ""), "name": short_name(span),
            "kind": span_kind(span), "status": span_status(span),
            "start": f"+{clock.offset(span.get('start_time_unix_nano')):.3f} s" if clock else "—",
            "duration": format_duration(span_seconds(span)),
            "worker": " @ ".join(str(p) for p in (pid, node) if p is not None) or "—",
            "branch": str(attrs.get("runner.branch")
                          or branches.get((span_kind(span), _plan_path(span))) or "—"),
        })
    for kind, name, path, branch in planned:
        if (kind, path) not in seen:
            rows.append({"path": path, "name": name, "kind": kind, "status": state(kind, path)[0],
                         "start": "—", "duration": "—", "worker": "—", "branch": branch or "—"})
    return rows


def _plan_steps(node: Node | None, branch: str | None = None
                ) -> Iterator[tuple[str, str, str, str | None]]:
    """(kind, name, path, enclosing branch) of every step of the plan, in plan order."""
    for child in (node or {}).get("children") or ():
        kind, path = child["kind"], str(child["path"])
        if kind in ("stage", "adapter"):
            yield kind, child["name"], path, branch
        elif kind == "group":
            for sub in child.get("children") or ():
                yield from _plan_steps(sub, str(sub["path"]))
            yield "merge", child["merge"], path, branch
        else:
            yield from _plan_steps(child, branch)


def _artifacts(run: Mapping[str, Any], indexes: Mapping[str, Mapping[str, Any]]
               ) -> list[dict[str, Any]]:
    """Each checkpoint with its fields; a field kept from an earlier checkpoint (its
    object named before in the run, or in runs written before objects, its file in
    another folder) is a reference."""
    listed = [dict(c) for c in run.get("checkpoints") or ()]
    known = {c.get("dir") for c in listed}
    listed += [{"dir": d, "name": i.get("name"), "path": i.get("path"), "kind": i.get("kind")}
               for d, i in sorted(indexes.items()) if d not in known]
    out = []
    seen: set[str] = set()  # objects named by an earlier checkpoint of the run
    for entry in listed:
        folder = str(entry.get("dir") or "")
        index = indexes.get(folder)
        fields = []
        for fname, meta in ((index or {}).get("fields") or {}).items():
            digest = meta.get("object")
            file = (f"objects/{digest[:2]}/{digest[2:]}" if digest  # the store's layout
                    else str(meta.get("file") or ""))
            own = digest not in seen if digest else file.startswith(folder + "/")
            seen.update([digest] if digest else [])
            rows = meta.get("rows")
            fields.append({"name": fname, "format": meta.get("format") or "—",
                           "rows": f"{rows:,}" if isinstance(rows, int) else "—",
                           "size": format_bytes(meta.get("bytes")),
                           "sha": str(digest or meta.get("sha256") or "")[:12] or "—",
                           "file": file, "written": own,
                           "bytes": int(meta.get("bytes") or 0)})
        written = [f for f in fields if f["written"]]
        out.append({"dir": folder, "name": entry.get("name") or "", "path": entry.get("path") or "",
                    "kind": entry.get("kind") or "", "seq": entry.get("seq"),
                    "missing": index is None, "fields": fields, "written": len(written),
                    "size": format_bytes(sum(f["bytes"] for f in written))})
    return out


# ---------------------------------------------------------------- header and error


def _header(run: Mapping[str, Any], clock: Clock | None) -> dict[str, Any]:
    status = str(run.get("status") or "unknown")
    started, ended = _parse_time(run.get("started")), _parse_time(run.get("ended"))
    if started and ended:
        duration = format_duration((ended - started).total_seconds())
    elif clock is not None:
        duration = f"≥ {format_duration(clock.total)} so far" if status == "running" \
            else format_duration(clock.total)
    else:
        duration = "—"
    return {
        "pipeline": run.get("pipeline") or "?", "run_id": run.get("run_id") or "?",
        "trace_id": run.get("trace_id") or "—", "status": status,
        "started": _show_time(run.get("started")),
        "ended": _show_time(run.get("ended")) if run.get("ended") else (
            "still running" if status == "running" else "—"),
        "duration": duration, "executor": run.get("executor") or "—",
        "attempts": run.get("attempts") or 1,
    }


def _stats(run: Mapping[str, Any], spans: Sequence[Mapping[str, Any]],
           artifacts: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The figures under the header; without spans, what run.json and the indexes say."""
    steps = [s for s in spans if span_kind(s) in STEP_KINDS]
    written = sum(f["bytes"] for c in artifacts for f in c["fields"] if f["written"])
    if not written:
        written = sum(int((s.get("attributes") or {}).get("runner.bytes") or 0) for s in spans
                      if span_kind(s) == "checkpoint.write")
    workers = {p for s in spans if (p := span_pid(s)) is not None}
    cached = sum(span_status(s) == "cached" for s in steps)
    stats = [
        ("steps run", str(len(steps) - cached)) if spans
        else ("steps completed", str(len(run.get("completed") or ()))),
        ("failed", str(sum(span_status(s) == "failed" for s in steps)) if spans
         else str(int(run.get("status") == "failed"))),
        ("checkpoints", str(len(artifacts))),
        ("written", format_bytes(written) if written else "—"),
        ("worker processes", str(len(workers)) if workers else "—"),
    ]
    if any("runner.cache" in (s.get("attributes") or {}) for s in steps):  # the cache was on
        stats.insert(1, ("cached", str(cached)))
    return stats


def _failed_step(spans: Sequence[Mapping[str, Any]], path: str | None) -> Mapping[str, Any] | None:
    """The step span that failed first: the one error.json names, else one with an exception."""
    failed = [s for s in spans if span_status(s) == "failed" and span_kind(s) in STEP_KINDS]
    failed.sort(key=lambda s: (_plan_path(s) != path, span_error(s)[0] is None,
                               s.get("end_time_unix_nano") or 0))
    return failed[0] if failed else None


def _error(run: Mapping[str, Any], spans: Sequence[Mapping[str, Any]],
           error: Mapping[str, Any] | None, context_url: str | None) -> dict[str, Any] | None:
    """What failed, from error.json when there is one, else from run.json and the spans.
    An interrupted run (a signal stopped it on purpose) is headed so, never "Error"."""
    interrupted = run.get("status") == "interrupted"
    if run.get("status") != "failed" and error is None and not interrupted:
        return None
    span = _failed_step(spans, (error or {}).get("path"))
    etype, message, stack = span_error(span) if span else (None, None, None)
    attrs = (span or {}).get("attributes") or {}
    info = dict(error or {})
    summary = run.get("error") or {}
    return {
        "heading": "Interrupted" if interrupted else "Error",
        # what failed is known (a bare interruption stopped between steps: nothing failed)
        "detail": not interrupted or error is not None or span is not None,
        "type": info.get("exception_type") or etype or summary.get("type") or "error",
        "message": info.get("message") or message or summary.get("message") or "",
        "stage": info.get("stage") or attrs.get("runner.stage") or (
            short_name(span) if span else "—"),
        "path": info.get("path") or attrs.get("runner.path") or "—",
        "kind": info.get("kind") or (span_kind(span) if span else "—"),
        "traceback": info.get("traceback") or stack or "",
        "pid": info.get("pid") or (span_pid(span) if span else None),
        "time": _show_time(info.get("time")) if info.get("time") else None,
        "summary": f"{summary.get('type')}: {summary.get('message')}" if summary else None,
        "context": context_url or info.get("error_context"),
        "pickle_error": info.get("pickle_error"),
    }


# ---------------------------------------------------------------- the page


@lru_cache(maxsize=1)
def _template() -> Template:
    env = Environment(loader=PackageLoader("runner.views", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda value: f"{value:.1f}"
    return env.get_template("report.html.j2")


def render_report(
    run: Mapping[str, Any],
    spans: Sequence[Mapping[str, Any]],
    indexes: Mapping[str, Mapping[str, Any]],
    error: Mapping[str, Any] | None,
    *,
    error_context_url: str | None = None,
    results: Mapping[str, Any] | None = None,
    results_note: str | None = None,
) -> str:
    """The run as one HTML document with no external reference (CSS and SVG inline).

    ``results`` is the run's results.json (untrusted: :mod:`runner.views.results` checks it),
    ``results_note`` why it is missing or not shown.
    """
    clock = Clock.of(spans)
    state = _state_of(run, spans, error)
    plan: Node | None = run.get("plan") or outline_from_spans(spans)
    check_outline_depth(plan)  # the walks below recurse
    artifacts = _artifacts(run, indexes)
    return _template().render(
        run=_header(run, clock),
        stats=_stats(run, spans, artifacts),
        dag=layout_dag(plan, state) if plan else None,
        dag_source="plan" if run.get("plan") else "spans",
        timeline=layout_timeline(spans, clock),
        kinds=sorted(TIMELINE_KINDS),
        steps=_steps(plan, spans, state, clock),
        artifacts=artifacts,
        error=_error(run, spans, error, error_context_url),
        results=(build_results_view(results, results_note)
                 if results is not None or results_note else None),
    )
