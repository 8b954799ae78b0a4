"""``runner runs ...`` and ``runner artifacts ...``: look at runs kept on the store."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runner.artifacts import ArtifactStore, list_runs, prune_runs, read_index, read_run
from runner.artifacts.checkpoint import load_field, run_dir
from runner.artifacts.codec import sha256
from runner.artifacts.store import storage_options_from
from runner.errors import IntegrityError, RunnerError, UsageError
from runner.telemetry import SPANS_FILE, decode_jsonl, encode_jsonl
from runner.telemetry.report import render_report
from runner.telemetry.view import render_trace

__all__ = ["ArtifactsOpt", "StorageOpt", "artifacts_app", "report_command", "runs_app",
           "trace_command"]

runs_app = typer.Typer(help="Runs kept in the artifact store.", no_args_is_help=True)
artifacts_app = typer.Typer(help="Files of a run's checkpoints.", no_args_is_help=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)

ArtifactsOpt = Annotated[
    str | None,
    typer.Option("--artifacts", help="Artifact root, any fsspec URL [env RUNNER_ARTIFACTS; "
                 "default data/artifacts]", show_default=False),
]
StorageOpt = Annotated[
    list[str] | None,
    typer.Option("--storage-option", help="KEY=VALUE passed to the fsspec filesystem "
                 "(e.g. endpoint_url=http://127.0.0.1:9000); repeatable", show_default=False),
]


def _store(artifacts: str | None, storage_option: list[str] | None) -> ArtifactStore:
    import os

    root = artifacts or os.environ.get("RUNNER_ARTIFACTS", "data/artifacts")
    return ArtifactStore(root, storage_options_from(storage_option or []))


def _guard(exc: RunnerError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(exc))}")
    return typer.Exit(exc.exit_code)


@runs_app.command("list")
def runs_list(artifacts: ArtifactsOpt = None, storage_option: StorageOpt = None,
              as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every run in the store, newest first."""
    try:
        docs = list_runs(_store(artifacts, storage_option))
    except RunnerError as exc:
        raise _guard(exc) from None
    if as_json:
        keys = ("run_id", "pipeline", "status", "started", "ended", "trace_id")
        out.print(json.dumps([{k: d.get(k) for k in keys} for d in docs]), markup=False)
        return
    table = Table("run_id", "pipeline", "status", "started", "steps", box=None)
    for d in docs:
        table.add_row(str(d.get("run_id")), str(d.get("pipeline", "")), str(d.get("status")),
                      str(d.get("started", ""))[:19], str(len(d.get("completed", []))))
    out.print(table)


@runs_app.command("show")
def runs_show(run_id: str, artifacts: ArtifactsOpt = None, storage_option: StorageOpt = None,
              as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One run: status, and each checkpoint with its fields and sizes."""
    try:
        store = _store(artifacts, storage_option)
        doc = read_run(store, run_id)
        indexes = [read_index(store, run_id, c["dir"]) for c in doc.get("checkpoints", [])]
    except RunnerError as exc:
        raise _guard(exc) from None
    if as_json:
        out.print(json.dumps({**doc, "indexes": indexes}, default=str), markup=False)
        return
    out.print(f"[bold]{run_id}[/] pipeline={doc.get('pipeline')} status={doc.get('status')} "
              f"attempts={doc.get('attempts')} trace_id={doc.get('trace_id')}")
    if doc.get("error"):
        out.print(f"[red]error:[/] {doc['error'].get('message')}")
    table = Table("step", "path", "kind", "field", "format", "rows", "bytes", "stored in",
                  box=None)
    for ckpt, index in zip(doc.get("checkpoints", []), indexes, strict=True):
        for i, (name, entry) in enumerate(index["fields"].items()):
            own = entry["file"].startswith(ckpt["dir"] + "/")
            table.add_row(ckpt["dir"].removeprefix("steps/") if i == 0 else "",
                          ckpt["path"] if i == 0 else "", ckpt["kind"] if i == 0 else "",
                          name, entry["format"], str(entry.get("rows") or ""),
                          str(entry["bytes"]), "here" if own else entry["file"].split("/")[1])
    out.print(table)


@runs_app.command("prune")
def runs_prune(
    older_than: Annotated[float, typer.Option("--older-than", help="Age in days")],
    artifacts: ArtifactsOpt = None, storage_option: StorageOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
) -> None:
    """Delete finished runs (checkpoints and forensics) older than N days."""
    try:
        pruned = prune_runs(_store(artifacts, storage_option), older_than_days=older_than,
                            dry_run=dry_run)
    except RunnerError as exc:
        raise _guard(exc) from None
    verb = "would delete" if dry_run else "deleted"
    err.print(f"{verb} {len(pruned)} runs" + (": " + ", ".join(pruned) if pruned else ""))


def _find_step(doc: dict[str, Any], step: str) -> dict[str, Any]:
    checkpoints = doc.get("checkpoints", [])
    for ckpt in reversed(checkpoints):
        name = ckpt["dir"].removeprefix("steps/")
        if step in (name, ckpt["path"], ckpt["name"], str(ckpt["seq"]), ckpt["dir"]):
            return dict(ckpt)
    names = ", ".join(c["dir"].removeprefix("steps/") for c in checkpoints)
    raise UsageError(f"no checkpoint {step!r} in run {doc.get('run_id')!r}; it has: {names}")


@artifacts_app.command("get")
def artifacts_get(
    run_id: str, step: str, field: str,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the stored file "
                      "(Parquet, JSON or pickle) here, checksum verified")] = None,
    artifacts: ArtifactsOpt = None, storage_option: StorageOpt = None,
) -> None:
    """One field of one checkpoint: STEP is its folder, number, stage name or plan path."""
    try:
        store = _store(artifacts, storage_option)
        ckpt = _find_step(read_run(store, run_id), step)
        index = read_index(store, run_id, ckpt["dir"])
        if field not in index["fields"]:
            raise UsageError(f"checkpoint {ckpt['dir']} has no field {field!r}; it has: "
                             + ", ".join(index["fields"]))
        entry = index["fields"][field]
        if output is not None:
            rel = f"{run_dir(run_id)}/{entry['file']}"
            data = store.read_bytes(rel)
            if sha256(data) != entry["sha256"]:
                raise IntegrityError(f"{store.url_of(rel)}: sha256 does not match the index")
            output.write_bytes(data)
            err.print(f"wrote {output} ({entry['format']}, {len(data)} bytes)")
            return
        value = load_field(store, run_id, entry)
    except RunnerError as exc:
        raise _guard(exc) from None
    if isinstance(value, pd.DataFrame | pd.Series):
        sys.stdout.write(value.to_string(max_rows=40) + "\n")
    else:
        sys.stdout.write(json.dumps(value, indent=2, default=repr) + "\n")


# ---------------------------------------------------------------- traces


def _spans(store: ArtifactStore, run_id: str, *, required: bool) -> list[dict[str, Any]]:
    rel = f"{run_dir(run_id)}/{SPANS_FILE}"
    if not store.exists(rel):
        if not store.exists(f"{run_dir(run_id)}/run.json"):
            raise UsageError(f"no run {run_id!r} in {store.url} (runner runs list shows them)")
        if required:
            where = store.url_of(run_dir(run_id))
            raise UsageError(f"run {run_id!r} has no {SPANS_FILE} in {where}: it ran with "
                             "OTEL_SDK_DISABLED, or it was killed before it ended "
                             "(its checkpoints are still there: runner runs show "
                             f"{run_id})")
        return []
    try:
        return decode_jsonl(store.read_bytes(rel))
    except ValueError as exc:
        raise IntegrityError(f"{store.url_of(rel)} is not valid JSON lines: {exc}") from None


def trace_command(
    run_id: str, artifacts: ArtifactsOpt = None, storage_option: StorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the spans as JSON lines")]
    = False,
) -> None:
    """A run's spans as a tree, with durations (from its spans.jsonl)."""
    try:
        spans = _spans(_store(artifacts, storage_option), run_id, required=True)
    except RunnerError as exc:
        raise _guard(exc) from None
    if as_json:
        sys.stdout.write(encode_jsonl(spans).decode())
        return
    out.print(render_trace(spans))


def report_command(
    run_id: str,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write the HTML [default: ./<RUN_ID>.html]",
        show_default=False)] = None,
    artifacts: ArtifactsOpt = None, storage_option: StorageOpt = None,
) -> None:
    """One self-contained HTML page of a run: DAG, timeline, steps, artifacts, error."""
    try:
        store = _store(artifacts, storage_option)
        doc = read_run(store, run_id)
        spans = _spans(store, run_id, required=False)
        indexes = {}
        for ckpt in doc.get("checkpoints", []):
            try:
                indexes[ckpt["dir"]] = read_index(store, run_id, ckpt["dir"])
            except RunnerError as exc:  # a half-written checkpoint must not hide the rest
                err.print(f"[yellow]warning:[/] {exc}")
        error_rel = f"summaries/runs/{run_id}/error.json"
        error = (json.loads(store.read_bytes(error_rel)) if store.exists(error_rel) else None)
        context_rel = f"summaries/runs/{run_id}/error_context.pkl"
        context_url = store.url_of(context_rel) if error and store.exists(context_rel) else None
    except RunnerError as exc:
        raise _guard(exc) from None
    html = render_report(doc, spans, indexes, error, error_context_url=context_url)
    target = output or Path(f"{run_id}.html")
    try:
        target.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise _guard(UsageError(f"cannot write {target}: {exc.strerror or exc}")) from None
    err.print(f"wrote {target} ({len(html) // 1024} KB; {len(spans)} spans"
              + ("" if spans else f"; no {SPANS_FILE}, so no timeline") + ")")
