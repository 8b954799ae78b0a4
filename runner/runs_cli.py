"""``runner runs ...`` and ``runner artifacts ...``: look at runs kept on the store."""

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from runner.cli_format import RunnerTyper
from runner.errors import IntegrityError, RunnerError, UsageError
from runner.json_stdout import note_error
from runner.words import did_you_mean, plural

if TYPE_CHECKING:  # the store, pandas and the telemetry load when a command runs, not for --help
    from runner.artifacts import ArtifactStore, RunDoc
    from runner.artifacts.documents import CheckpointRef

__all__ = ["AllowUnsignedOpt", "ArtifactsOpt", "StorageOpt", "artifacts_app", "report_command",
           "runs_app", "trace_command"]

runs_app = RunnerTyper(help="Runs kept in the artifact store.", no_args_is_help=True)
artifacts_app = RunnerTyper(help="Files of a run's checkpoints.", no_args_is_help=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)

ArtifactsOpt = Annotated[
    str | None,
    typer.Option("--artifacts", metavar="URL",
                 help="Artifact root, any fsspec URL [env RUNNER_ARTIFACTS; "
                 "default data/artifacts]", show_default=False),
]
StorageOpt = Annotated[
    list[str] | None,
    typer.Option("--storage-option", metavar="KEY=VALUE",
                 help="KEY=VALUE passed to the fsspec filesystem "
                 "(e.g. endpoint_url=http://127.0.0.1:9000); repeatable", show_default=False),
]

RunIdArg = Annotated[str, typer.Argument(
    metavar="RUN_ID", help="A run's id, as runner run printed it (runner runs list shows "
    "them)", show_default=False)]

AllowUnsignedOpt = Annotated[
    bool,
    typer.Option("--allow-unsigned", help="Read store content that does not verify with the "
                 "artifact key (an old or foreign store you trust), with a warning"),
]


def _store(artifacts: str | None, storage_option: list[str] | None) -> "ArtifactStore":
    import os

    from runner.artifacts import ArtifactStore, storage_options_from

    root = artifacts or os.environ.get("RUNNER_ARTIFACTS", "data/artifacts")
    return ArtifactStore(root, storage_options_from(storage_option or []))


def _root_from(artifacts: str | None) -> str:
    """Where the artifact root came from, in the user's terms."""
    import os

    if artifacts:
        return "from --artifacts"
    if os.environ.get("RUNNER_ARTIFACTS"):
        return "from RUNNER_ARTIFACTS"
    return "the default root data/artifacts, under the current folder"


def _guard(exc: RunnerError) -> typer.Exit:
    note_error(str(exc))
    err.print(f"[bold red]error:[/] {escape(str(exc))}")
    return typer.Exit(exc.exit_code)


@runs_app.command("list")
def runs_list(artifacts: ArtifactsOpt = None, storage_option: StorageOpt = None,
              as_json: Annotated[bool, typer.Option(
                  "--json", help="Print the runs as one JSON array on stdout")] = False,
              allow_unsigned: AllowUnsignedOpt = False) -> None:
    """Every run in the store, newest first."""
    from rich.table import Table

    from runner.artifacts import list_runs

    try:
        store = _store(artifacts, storage_option)
        listed = list_runs(store, allow_unsigned=allow_unsigned)
    except RunnerError as exc:
        raise _guard(exc) from None
    if not listed and not as_json:
        where = store.url_of("runs")
        where = where if "://" in where else str(Path(where).absolute())
        err.print(f"no runs in {escape(where)} ({_root_from(artifacts)}); "
                  "runs elsewhere: --artifacts URL or RUNNER_ARTIFACTS")
        return
    if as_json:
        out.print(json.dumps([
            {"run_id": r.run_id, "pipeline": r.doc.pipeline if r.doc else None,
             "status": r.status, "started": r.doc.started if r.doc else None,
             "ended": r.doc.ended if r.doc else None,
             "trace_id": r.doc.trace_id if r.doc else None,
             **({"error": r.problem} if r.problem else {})} for r in listed]), markup=False)
        return
    table = Table("run_id", "pipeline", "status", "started", "steps", box=None)
    for r in listed:
        doc = r.doc
        table.add_row(escape(r.run_id), escape(doc.pipeline) if doc else "", r.status,
                      escape(r.started[:19]), str(len(doc.completed)) if doc else "")
    out.print(table)
    for r in listed:
        if r.problem:
            err.print(f"[yellow]{r.status}:[/] {escape(r.problem)}")
    if any(r.empty for r in listed):
        err.print("runner runs prune deletes empty run folders as it does finished runs")


@runs_app.command("show")
def runs_show(run_id: RunIdArg, artifacts: ArtifactsOpt = None,
              storage_option: StorageOpt = None,
              as_json: Annotated[bool, typer.Option(
                  "--json", help="Print the run and its checkpoints' indexes as one JSON "
                  "object on stdout")] = False,
              allow_unsigned: AllowUnsignedOpt = False) -> None:
    """One run: status, and each checkpoint with its fields and sizes."""
    from rich.table import Table

    from runner.artifacts import read_index, read_run, run_paths

    try:
        run_paths(run_id)
        store = _store(artifacts, storage_option)
        doc = read_run(store, run_id, allow_unsigned=allow_unsigned)
        indexes = [read_index(store, run_id, c, allow_unsigned=allow_unsigned)
                   for c in doc.checkpoints]
    except RunnerError as exc:
        raise _guard(exc) from None
    if as_json:
        out.print(json.dumps({**_interruption_apart(doc.model_dump(mode="json")),
                              "indexes": [i.model_dump(mode="json") for i in indexes]}),
                  markup=False)
        return
    out.print(f"[bold]{escape(run_id)}[/] pipeline={escape(doc.pipeline)} status={doc.status} "
              f"attempts={doc.attempts} trace_id={escape(str(doc.trace_id))}")
    if doc.error:
        out.print(f"{_ended_label(doc.status)} {escape(doc.error.message)}")
    if doc.history:
        _show_attempts(store, doc)
    table = Table("step", "path", "kind", "field", "format", "rows", "bytes", "stored in",
                  box=None)
    for ckpt, index in zip(doc.checkpoints, indexes, strict=True):
        for i, (name, entry) in enumerate(index.fields.items()):
            own = entry.file.startswith(ckpt.dir + "/")
            first = i == 0
            table.add_row(escape(ckpt.dir.removeprefix("steps/")) if first else "",
                          escape(ckpt.path) if first else "", ckpt.kind if first else "",
                          name, entry.format, str(entry.rows or ""),
                          "" if entry.inline else str(entry.bytes),
                          "inline" if entry.inline
                          else "here" if own else escape(entry.file.split("/")[1]))
    out.print(table)


def _ended_label(status: str) -> str:
    """How a run's (or an attempt's) recorded message is labelled: a signal that
    stopped it on purpose is no error."""
    return "[yellow]interrupted:[/]" if status == "interrupted" else "[red]error:[/]"


def _interruption_apart(doc: dict[str, Any]) -> dict[str, Any]:
    """run.json for ``--json``, where an interrupted run (or attempt) has its message
    under ``interruption`` and ``error`` null: ``error`` means something failed."""
    def apart(entry: dict[str, Any]) -> dict[str, Any]:
        if entry.get("status") != "interrupted":
            return entry
        return {**entry, "error": None, "interruption": entry.get("error")}

    return apart({**doc, "history": [apart(h) for h in doc.get("history") or ()]})


def _show_attempts(store: "ArtifactStore", doc: "RunDoc") -> None:
    """Each attempt of a resumed run, a line each: how it ended, where it started
    from, its executor and trace; then an earlier one's error and where its
    forensics were moved."""
    from runner.artifacts import run_paths

    paths = run_paths(doc.run_id)
    current = {"attempt": doc.attempts, "status": doc.status,
               "started": doc.attempt_started or doc.started, "executor": doc.executor,
               "resumed_after": doc.resumed_after, "trace_id": doc.trace_id, "error": None}
    for row in [*(h.model_dump() for h in doc.history), current]:
        start = f"after {row['resumed_after']}" if row["resumed_after"] else "from the start"
        status = row["status"]
        if row is not current and status == "running":
            status = "killed"  # it never recorded its end: SIGKILL, OOM, a lost node
        out.print(f"attempt {row['attempt']}: {status:<11} "
                  f"{escape(str(row['started'] or '')[:19])}  {escape(start)}  "
                  f"executor={escape(str(row['executor']))}  trace_id={row['trace_id']}")
        if row["error"]:
            out.print(f"  {_ended_label(row['status'])} "
                      f"{escape(str(row['error'].get('message', '')))}")
        forensics = paths.attempt_error_info_file(row["attempt"])
        if row is not current and store.exists(forensics):
            out.print(f"  forensics: {escape(store.url_of(forensics).rpartition('/')[0])}")


@runs_app.command("prune")
def runs_prune(
    older_than: Annotated[float, typer.Option(
        "--older-than", metavar="DAYS", help="Age in days (fractions too: 0.5)")],
    artifacts: ArtifactsOpt = None, storage_option: StorageOpt = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Say which runs would be deleted; delete nothing")] = False,
    allow_unsigned: AllowUnsignedOpt = False,
    unreadable: Annotated[bool, typer.Option(
        "--unreadable", help="Also delete run folders whose run.json does not read or "
        "verify (kept by default for a human to look at)")] = False,
) -> None:
    """Delete finished runs (checkpoints and forensics) older than N days, and empty
    run folders (no run.json) last written that long ago; never a run whose lease a
    live process holds."""
    from runner.artifacts import prune_runs

    try:
        pruned = prune_runs(_store(artifacts, storage_option), older_than_days=older_than,
                            dry_run=dry_run, allow_unsigned=allow_unsigned,
                            unreadable=unreadable)
    except RunnerError as exc:
        raise _guard(exc) from None
    verb = "would delete" if dry_run else "deleted"
    err.print(f"{verb} {plural(len(pruned), 'run')}" + (": " + ", ".join(pruned) if pruned else ""))


def _find_step(doc: "RunDoc", step: str) -> "CheckpointRef":
    for ckpt in reversed(doc.checkpoints):
        name = ckpt.dir.removeprefix("steps/")
        if step in (name, ckpt.path, ckpt.name, str(ckpt.seq), ckpt.dir):
            return ckpt
    names = [c.dir.removeprefix("steps/") for c in doc.checkpoints]
    close = did_you_mean(step, [*names, *(c.name for c in doc.checkpoints)])
    raise UsageError(f"no checkpoint {step!r} in run {doc.run_id!r}{close}; it has: "
                     + ", ".join(names))


@artifacts_app.command("get")
def artifacts_get(
    run_id: RunIdArg,
    step: Annotated[str, typer.Argument(
        metavar="STEP", help="The checkpoint: its folder, number, stage name or plan path "
        "(runner runs show RUN_ID lists them)", show_default=False)],
    field: Annotated[str, typer.Argument(
        metavar="FIELD", help="A field of the context stored in that checkpoint",
        show_default=False)],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", help="Write the stored file (Parquet, JSON or "
        "pickle) here, checksum verified [default: print it]", show_default=False)] = None,
    artifacts: ArtifactsOpt = None, storage_option: StorageOpt = None,
    allow_unsigned: AllowUnsignedOpt = False,
) -> None:
    """One field of one checkpoint: STEP is its folder, number, stage name or plan path."""
    import pandas as pd

    from runner.artifacts import load_field, read_index, read_run, run_paths
    from runner.digest import digest_matches

    try:
        paths = run_paths(run_id)
        store = _store(artifacts, storage_option)
        ckpt = _find_step(read_run(store, run_id, allow_unsigned=allow_unsigned), step)
        index = read_index(store, run_id, ckpt, allow_unsigned=allow_unsigned)
        if field not in index.fields:
            raise UsageError(f"checkpoint {ckpt.dir} has no field {field!r}"
                             + did_you_mean(field, index.fields) + "; it has: "
                             + ", ".join(index.fields))
        entry = index.fields[field]
        if output is not None and entry.inline:  # kept in the run's record, no file of its own
            try:
                output.write_text(json.dumps(entry.value) + "\n")
            except OSError as exc:
                raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from exc
            err.print(f"wrote {output} (json, an inline value)")
            return
        if output is not None:
            rel = paths.member(entry.file)
            data = store.read_bytes(rel)
            if not digest_matches(data, entry.sha256):
                raise IntegrityError(f"{store.url_of(rel)}: sha256 does not match the index")
            try:
                output.write_bytes(data)
            except OSError as exc:
                raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from exc
            err.print(f"wrote {output} ({entry.format}, {len(data)} bytes)")
            return
        value = load_field(store, run_id, entry, allow_unsigned=allow_unsigned)
    except RunnerError as exc:
        raise _guard(exc) from None
    if isinstance(value, pd.DataFrame | pd.Series):
        sys.stdout.write(value.to_string(max_rows=40) + "\n")
    else:
        sys.stdout.write(json.dumps(value, indent=2, default=repr) + "\n")


# ---------------------------------------------------------------- traces


def _spans(store: "ArtifactStore", run_id: str, *, required: bool, allow_unsigned: bool
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

    try:
        spans = _spans(_store(artifacts, storage_option), run_id, required=True,
                       allow_unsigned=allow_unsigned)
    except RunnerError as exc:
        raise _guard(exc) from None
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
    """One self-contained HTML page of a run: results, DAG, timeline, steps, artifacts,
    error."""
    from runner.artifacts import read_index, read_run, run_paths
    from runner.artifacts.documents import read_error_doc
    from runner.artifacts.layout import SPANS_FILE
    from runner.artifacts.results import read_results
    from runner.views.report import render_report

    try:
        paths = run_paths(run_id)
        store = _store(artifacts, storage_option)
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
    except RunnerError as exc:
        raise _guard(exc) from None
    html = render_report(doc.model_dump(mode="json"), spans, indexes, error,
                         error_context_url=context_url, results=results,
                         results_note=results_note)
    target = output or Path(f"{run_id}.html")
    try:
        target.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise _guard(UsageError(f"cannot write {target}: {exc.strerror or exc}")) from None
    err.print(f"wrote {target} ({len(html) // 1024} KB; {plural(len(spans), 'span')}"
              + ("" if spans else f"; no {SPANS_FILE}, so no timeline") + ")")
