"""Structured logs: every log line of a run carries its run_id, trace_id and span_id.

    configure_logging("json", "INFO")     # one JSON object per line on stderr

The ids come from the active OpenTelemetry span when there is one (the step that
is running, on whatever thread runs it), and otherwise from the run in progress
(:class:`LogHook` registers it), so lines written by background threads, such as
checkpoint writers, are tied to their run too.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from runner.errors import RunInterruptedError
from runner.orchestration.hooks import RunHook

if TYPE_CHECKING:  # the command line configures logging before any run: not imported then
    from runner.orchestration.records import RunInfo, RunResult, StepRecord

__all__ = ["NOTE", "JsonFormatter", "LogHook", "RunContextFilter", "TextFormatter",
           "configure_logging"]

log = logging.getLogger("runner")

_ACTIVE: dict[str, str] = {}  # run_id -> trace_id of runs in progress in this process
_ACTIVE_LOCK = threading.Lock()

TEXT_FORMAT = "%(levelname)s %(name)s [run_id=%(run_id)s trace_id=%(trace_id)s]: %(message)s"
"""A log line of a run; outside a run the bracket of ids is left out."""
NOTE = "note"
"""The ``event`` of a note for the user: ``log.warning("note: ...", extra={"event": NOTE})``
reads as a plain ``note: ...`` line in text mode (a JSON line, like any other, in json)."""
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "run_id",
                                                    "trace_id", "span_id"}


class RunContextFilter(logging.Filter):
    """Adds ``run_id``, ``trace_id`` and ``span_id`` to every record (``None`` when
    no run is in progress)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from opentelemetry import trace  # not at import: the command line logs without it

        run_id = trace_id = span_id = None
        span = trace.get_current_span()
        ctx = span.get_span_context()
        if ctx.is_valid:
            trace_id, span_id = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
            attrs = getattr(span, "attributes", None) or {}
            found = attrs.get("runner.run_id")
            run_id = found if isinstance(found, str) else None
        if run_id is None:
            with _ACTIVE_LOCK:
                only = next(iter(_ACTIVE.items())) if len(_ACTIVE) == 1 else None
            if only is not None and (trace_id is None or trace_id == only[1]):
                run_id, trace_id = only
        for name, value in (("run_id", run_id), ("trace_id", trace_id), ("span_id", span_id)):
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the run's ids, any
    ``extra=`` fields, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "run_id": getattr(record, "run_id", None),
            "trace_id": getattr(record, "trace_id", None),
            "span_id": getattr(record, "span_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    """``LEVEL logger [run_id=... trace_id=...]: message`` in a run, without the ids
    outside one (they would read ``None``), and a note for the user as its message only."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self.outside = logging.Formatter("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "event", None) == NOTE and not record.exc_info:
            return record.getMessage()
        if getattr(record, "run_id", None) is None and getattr(record, "trace_id", None) is None:
            return self.outside.format(record)
        return super().format(record)


def configure_logging(fmt: str = "text", level: str | int = "WARNING",
                      stream: IO[str] | None = None) -> None:
    """Set up the root logger: ``text`` (human) or ``json`` lines, on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RunContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # the exporter logs every retry; the runner says once what could not be sent
    quiet = root.getEffectiveLevel() > logging.DEBUG
    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL if quiet else logging.DEBUG)


class LogHook(RunHook):
    """Logs the run's progress at INFO, and makes its ids known to the log filter."""

    def on_run_start(self, run: RunInfo, plan: Any, context: Any) -> None:
        with _ACTIVE_LOCK:
            _ACTIVE[run.run_id] = run.trace_id
        log.info("run started: pipeline %s, executor %s", run.pipeline, run.executor,
                 extra={"pipeline": run.pipeline, "event": "run_started"})

    def on_step_end(self, run: RunInfo, record: StepRecord, context: Any | None) -> None:
        # INFO even when it failed: the error itself is raised to the front door, which
        # says it once (a log line here and there would print every failure three times)
        extra = {"event": "step_ended", "path": record.path, "status": record.status,
                 "duration_s": round(record.duration, 6), "pid": record.pid,
                 "branch": record.branch}
        if record.error:
            extra["error_type"] = record.error.partition(":")[0]
        if record.cache_key is not None:  # cached (not run), or run and kept in the cache
            extra["cache_key"] = record.cache_key
        log.info("%s %s %s in %.3fs", record.kind, record.name, record.status,
                 record.duration, extra=extra)

    def on_run_end(self, run: RunInfo, result: RunResult | None,
                   error: BaseException | None) -> None:
        if error is None:
            extra: dict[str, Any] = {"event": "run_ended", "status": "succeeded"}
            records = result.records if result else ()
            if any(r.cache_key is not None for r in records):  # the run used the step cache
                extra["steps_cached"] = sum(r.status == "cached" for r in records)
                extra["steps_ran"] = len(records) - extra["steps_cached"]
            log.info("run succeeded in %.2fs", result.duration if result else 0.0, extra=extra)
        elif isinstance(error, RunInterruptedError):
            log.info("run interrupted: %s", error,
                        extra={"event": "run_ended", "status": "interrupted"})
        else:  # the error is the caller's to report (the command line prints it once)
            log.info("run failed: %s", type(error).__name__,
                     extra={"event": "run_ended", "status": "failed",
                            "error_type": type(error).__name__})
        with _ACTIVE_LOCK:
            _ACTIVE.pop(run.run_id, None)
