"""``runner trace`` and ``runner report``: a run's spans as a tree, and one
self-contained HTML page of the run.

The page and the span view are the report package's; they load when a command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runner.cli.markup import escape
from runner.cli.options import AllowUnsignedOpt, ArtifactsOpt, RunIdArg, StorageOpt
from runner.cli.output import err
from runner.cli.output import wide as out
from runner.cli.parsing import open_store
from runner.errors import IntegrityError, RunnerError, UsageError
from runner.words import plural

if TYPE_CHECKING:
    from runner.artifacts import ArtifactStore

__all__ = ["register", "report_command", "trace_command"]


def _spans(store: ArtifactStore, run_id: str, *, required: bool, allow_unsigned: bool
           ) -> list[dict[str, Any]]:
    """The spans of every attempt of the run, oldest first, each tagged with its
    ``runner.attempt``."""
    from runner.artifacts import read_run, run_paths
    from runner.artifacts.attempts import attempt_spans
    from runner.artifacts.layout import SPANS_FILE

    paths = run_paths(run_id)
    if not store.exists(paths.run_file):
        if not store.exists(paths.spans_file):
            raise UsageError(f"no run {run_id!r} in {store.url} (runner runs list shows them)")
        latest = 1
    else:
        latest = read_run(store, run_id, allow_unsigned=allow_unsigned).attempts
    found = attempt_spans(store, run_id, latest=latest, allow_unsigned=allow_unsigned)
    if not found and required:
        where = store.url_of(paths.dir)
        raise UsageError(f"run {run_id!r} has no {SPANS_FILE} in {where}: it ran with "
                         "OTEL_SDK_DISABLED, or it was killed before it ended "
                         f"(its checkpoints are still there: runner runs show {run_id})")
    return [span for attempt in found for span in attempt.spans]


def trace_command(
    run_id: RunIdArg, artifacts: ArtifactsOpt = None, storage_option: StorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the spans as JSON lines")]
    = False,
    allow_unsigned: AllowUnsignedOpt = False,
) -> None:
    """A run's spans as a tree, with durations (from its spans.jsonl)."""
    from runner.telemetry import encode_jsonl
    from runner.views.trace import render_attempts

    spans = _spans(open_store(artifacts, storage_option), run_id, required=True,
                   allow_unsigned=allow_unsigned)
    if as_json:
        sys.stdout.write(encode_jsonl(spans).decode())
        return
    out.print(render_attempts(spans))


def report_command(
    run_id: RunIdArg,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", help="Where to write the HTML [default: ./<RUN_ID>.html]",
        show_default=False)] = None,
    artifacts: ArtifactsOpt = None, storage_option: StorageOpt = None,
    allow_unsigned: AllowUnsignedOpt = False,
) -> None:
    """A run on one self-contained HTML page: results, DAG, timeline, steps, files, error."""
    from runner.artifacts import read_index, read_run, run_paths
    from runner.artifacts.forensics import read_error_doc
    from runner.artifacts.layout import SPANS_FILE
    from runner.artifacts.results import read_results
    from runner.views.report import render_report

    paths = run_paths(run_id)
    store = open_store(artifacts, storage_option)
    doc = read_run(store, run_id, allow_unsigned=allow_unsigned)
    spans = _spans(store, run_id, required=False, allow_unsigned=allow_unsigned)
    indexes = {}
    for ckpt in doc.checkpoints:
        try:
            indexes[ckpt.dir] = read_index(store, run_id, ckpt,
                                           allow_unsigned=allow_unsigned
                                           ).model_dump(mode="json")
        except IntegrityError:
            raise  # tampered: refused as a whole
        except RunnerError as exc:  # a half-written checkpoint must not hide the rest
            err.print(f"[yellow]warning:[/] {escape(str(exc))}")
    error = (read_error_doc(store, run_id, allow_unsigned=allow_unsigned
                            ).model_dump(mode="json")
             if store.exists(paths.error_info_file) else None)
    context_rel = paths.error_context_file
    context_url = store.url_of(context_rel) if error and store.exists(context_rel) else None
    results, results_note = read_results(
        store, run_id, doc.results.model_dump() if doc.results is not None else None)
    html = render_report(doc.model_dump(mode="json"), spans, indexes, error,
                         error_context_url=context_url, results=results,
                         results_note=results_note)
    target = output or Path(f"{run_id}.html")
    try:
        target.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    err.print(f"wrote {target} ({len(html) // 1024} KB; {plural(len(spans), 'span')}"
              + ("" if spans else f"; no {SPANS_FILE}, so no timeline") + ")")


def register(app: typer.Typer) -> None:
    """Add ``trace`` and ``report`` to the ``runner`` app."""
    app.command("trace")(trace_command)
    app.command("report")(report_command)
