"""``runner runs list|show|prune`` and ``runner artifacts get``: runs kept on the store."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runner.cli.format import RunnerTyper
from runner.cli.markup import escape
from runner.cli.options import AllowUnsignedOpt, ArtifactsOpt, RunIdArg, StorageOpt
from runner.cli.output import err
from runner.cli.output import wide as out
from runner.cli.parsing import artifact_root, open_store
from runner.errors import UsageError
from runner.words import did_you_mean, plural

if TYPE_CHECKING:  # the store, pandas and the telemetry load when a command runs, not for --help
    from runner.artifacts import ArtifactStore, RunDoc
    from runner.artifacts.documents import CheckpointRef

__all__ = ["register"]

runs_app = RunnerTyper(help="Runs kept in the artifact store.", no_args_is_help=True)
artifacts_app = RunnerTyper(help="Files of a run's checkpoints.", no_args_is_help=True)


@runs_app.command("list")
def runs_list(artifacts: ArtifactsOpt = None, storage_option: StorageOpt = None,
              as_json: Annotated[bool, typer.Option(
                  "--json", help="Print the runs as one JSON array on stdout")] = False,
              allow_unsigned: AllowUnsignedOpt = False) -> None:
    """Every run in the store, newest first."""
    from rich.table import Table

    from runner.artifacts import list_runs

    store = open_store(artifacts, storage_option)
    listed = list_runs(store, allow_unsigned=allow_unsigned)
    if not listed and not as_json:
        where = store.url_of("runs")
        where = where if "://" in where else str(Path(where).absolute())
        err.print(f"no runs in {escape(where)} ({artifact_root(artifacts)[1]}); "
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

    run_paths(run_id)
    store = open_store(artifacts, storage_option)
    doc = read_run(store, run_id, allow_unsigned=allow_unsigned)
    indexes = [read_index(store, run_id, c, allow_unsigned=allow_unsigned)
               for c in doc.checkpoints]
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
    first_in: dict[str, str] = {}  # object -> the checkpoint that first named it
    for ckpt, index in zip(doc.checkpoints, indexes, strict=True):
        for i, (name, entry) in enumerate(index.fields.items()):
            if entry.object is not None:
                owner = first_in.setdefault(entry.object, ckpt.dir)
            else:
                owner = "/".join(entry.file.split("/")[:2])
            first = i == 0
            table.add_row(escape(ckpt.dir.removeprefix("steps/")) if first else "",
                          escape(ckpt.path) if first else "", ckpt.kind if first else "",
                          name, entry.format, str(entry.rows or ""),
                          "" if entry.inline else str(entry.bytes),
                          "inline" if entry.inline else "here" if owner == ckpt.dir
                          else escape(owner.removeprefix("steps/")))
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


def _show_attempts(store: ArtifactStore, doc: RunDoc) -> None:
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
        "--dry-run", help="Say which runs, and how many objects and bytes, would be "
        "deleted; delete nothing")] = False,
    allow_unsigned: AllowUnsignedOpt = False,
    unreadable: Annotated[bool, typer.Option(
        "--unreadable", help="Also delete run folders whose run.json does not read or "
        "verify (kept by default for a human to look at)")] = False,
    grace: Annotated[float, typer.Option(
        "--grace", metavar="HOURS", min=0, help="Keep unreferenced objects written or "
        "reused less than this long ago (a run going on may not have named them yet)")
    ] = 24.0,
) -> None:
    """Delete finished runs older than N days, then the objects nothing references.

    Finished runs (checkpoints and forensics) older than N days go, and empty run
    folders (no run.json) last written that long ago; never a run whose lease a live
    process holds. Then the stored objects (checkpoint fields) that no remaining run
    and no step-cache entry references are deleted."""
    from runner.artifacts import prune_runs, sweep_store
    from runner.cache.entries import referenced_objects

    store = open_store(artifacts, storage_option)
    pruned = prune_runs(store, older_than_days=older_than, dry_run=dry_run,
                        allow_unsigned=allow_unsigned, unreadable=unreadable)
    verb = "would delete" if dry_run else "deleted"
    err.print(f"{verb} {plural(len(pruned), 'run')}" + (": " + ", ".join(pruned) if pruned else ""))
    swept = sweep_store(store, also_referenced=referenced_objects(
        store, allow_unsigned=allow_unsigned), excluding=pruned if dry_run else (),
        dry_run=dry_run, allow_unsigned=allow_unsigned, grace=grace * 3600)
    if swept.skipped:
        err.print(f"[yellow]warning:[/] {escape(swept.skipped)}")
        return
    young = (f"; kept {plural(len(swept.kept_young), 'unreferenced object')} newer than "
             f"{grace:g} h" if swept.kept_young else "")
    err.print(f"{verb} {plural(len(swept.deleted), 'unreferenced object')} "
              f"({swept.bytes:,} bytes){young}")


def _find_step(doc: RunDoc, step: str) -> CheckpointRef:
    for ckpt in reversed(doc.checkpoints):
        name = ckpt.dir.removeprefix("steps/")
        if step in (name, ckpt.path, ckpt.name, str(ckpt.seq), ckpt.dir):
            return ckpt
    names = [c.dir.removeprefix("steps/") for c in doc.checkpoints]
    close = did_you_mean(step, [*names, *(c.name for c in doc.checkpoints)])
    raise UsageError(f"no checkpoint {step!r} in run {doc.run_id!r}{close}; it has: "
                     + ", ".join(names))


def _write_field(store: ArtifactStore, run_id: str, ckpt: CheckpointRef, name: str,
                 entry: Any, output: Path) -> None:
    """``artifacts get -o FILE``: the stored bytes, checked against their digest (an
    inline value, kept in the run's record with no object of its own, as JSON)."""
    from runner.artifacts.reading import field_bytes

    if entry.inline:
        data = (json.dumps(entry.value) + "\n").encode()
        said = "json, an inline value"
    else:
        data, _ = field_bytes(store, run_id, entry, name=name, checkpoint=ckpt.dir)
        said = f"{entry.format}, {len(data)} bytes"
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from exc
    err.print(f"wrote {output} ({said})")


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

    run_paths(run_id)
    store = open_store(artifacts, storage_option)
    ckpt = _find_step(read_run(store, run_id, allow_unsigned=allow_unsigned), step)
    index = read_index(store, run_id, ckpt, allow_unsigned=allow_unsigned)
    if field not in index.fields:
        raise UsageError(f"checkpoint {ckpt.dir} has no field {field!r}"
                         + did_you_mean(field, index.fields) + "; it has: "
                         + ", ".join(index.fields))
    entry = index.fields[field]
    if output is not None:
        _write_field(store, run_id, ckpt, field, entry, output)
        return
    value = load_field(store, run_id, entry, name=field, checkpoint=ckpt.dir,
                       allow_unsigned=allow_unsigned)
    if isinstance(value, pd.DataFrame | pd.Series):
        sys.stdout.write(value.to_string(max_rows=40) + "\n")
    else:
        sys.stdout.write(json.dumps(value, indent=2, default=repr) + "\n")


def register(app: typer.Typer) -> None:
    """Add ``runs`` and ``artifacts`` to the ``runner`` app."""
    app.add_typer(runs_app, name="runs")
    app.add_typer(artifacts_app, name="artifacts")
