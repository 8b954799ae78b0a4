"""``runner cache list|clear``: the step cache's entries kept in the artifact store
(:mod:`runner.cache.entries`). Not the check cache of ``list`` and ``validate``
(:mod:`runner.cli.cache`).

Clearing deletes entries; the objects they named stay until a sweep finds that no run
and no entry references them (``runner runs prune``), so a run reading them meanwhile
never loses one.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runner.cli.format import RunnerTyper
from runner.cli.markup import escape
from runner.cli.options import AllowUnsignedOpt, ArtifactsOpt, StorageOpt
from runner.cli.output import err
from runner.cli.output import wide as out
from runner.cli.parsing import open_store
from runner.errors import UsageError
from runner.words import plural

if TYPE_CHECKING:  # the store and pydantic load when a command runs, not for --help
    from runner.artifacts.store import ArtifactStore
    from runner.cache.entries import EntryListing

__all__ = ["register"]

cache_app = RunnerTyper(help="The step cache kept in the artifact store (runner run --cache).",
                        no_args_is_help=True)

StageOpt = Annotated[str | None, typer.Option(
    "--stage", metavar="STAGE", show_default=False,
    help="Only this stage's entries (its registered name; the unreadable ones "
    "in its folder too)")]


def _row(listing: EntryListing) -> dict[str, Any]:
    """One entry as ``cache list`` shows it (an unreadable one: its path and problem)."""
    doc = listing.doc
    if doc is None:
        return {"path": listing.path, "problem": listing.problem}
    return {"stage": doc.stage, "key": doc.key, "created": doc.created,
            "objects": len(doc.objects()),
            "bytes": sum(o.bytes for o in doc.outputs.values() if o.object is not None),
            "fields": sorted(doc.outputs), "runner_version": doc.runner_version,
            "path": listing.path}


def _entries(store: ArtifactStore, stage: str | None, allow_unsigned: bool
             ) -> list[dict[str, Any]]:
    from runner.cache.entries import list_entries

    return [_row(e) for e in list_entries(store, stage=stage, allow_unsigned=allow_unsigned)]


@cache_app.command("list")
def cache_list(stage: StageOpt = None, artifacts: ArtifactsOpt = None,
               storage_option: StorageOpt = None,
               as_json: Annotated[bool, typer.Option(
                   "--json", help="Print the entries as one JSON object on stdout")] = False,
               allow_unsigned: AllowUnsignedOpt = False) -> None:
    """Every step-cache entry in the store: stage, key, when it was made, its objects and
    bytes, and the runner that made it."""
    from rich.table import Table

    store = open_store(artifacts, storage_option)
    rows = _entries(store, stage, allow_unsigned)
    good = [r for r in rows if "problem" not in r]
    if as_json:
        out.print(json.dumps({"store": store.url_of("cache"), "entries": good,
                              "unreadable": [r for r in rows if "problem" in r]}), markup=False)
        return
    if not rows:
        which = f" of stage {stage!r}" if stage else ""
        err.print(f"no step-cache entries{escape(which)} in {escape(store.url_of('cache'))}; "
                  "runner run PIPELINE --cache fills it")
        return
    table = Table("stage", "key", "created", "objects", "bytes", "runner", box=None)
    for r in good:
        table.add_row(escape(r["stage"]), r["key"][:12], escape(r["created"][:19]),
                      str(r["objects"]), f"{r['bytes']:,}", escape(r["runner_version"]))
    out.print(table)
    for r in rows:
        if "problem" in r:
            err.print(f"[yellow]unreadable:[/] {escape(r['problem'])}")
    total = sum(r["bytes"] for r in good)
    err.print(f"{plural(len(good), 'entry', 'entries')}, {total:,} bytes of objects "
              f"in {escape(store.url_of('cache'))}")


@cache_app.command("clear")
def cache_clear(stage: StageOpt = None,
                everything: Annotated[bool, typer.Option(
                    "--all", help="Every entry (unreadable ones too)")] = False,
                dry_run: Annotated[bool, typer.Option(
                    "--dry-run", help="Say what would be deleted; delete nothing")] = False,
                yes: Annotated[bool, typer.Option(
                    "--yes", "-y", help="Do not ask for confirmation")] = False,
                artifacts: ArtifactsOpt = None, storage_option: StorageOpt = None,
                as_json: Annotated[bool, typer.Option(
                    "--json", help="Print what was deleted as one JSON object on stdout")]
                = False,
                grace: Annotated[float, typer.Option(
                    "--grace", metavar="HOURS", min=0, help="Keep unreferenced objects "
                    "written or reused less than this long ago")] = 24.0) -> None:
    """Delete step-cache entries (--stage S, or --all): those steps run again on the next
    cached run. Then the stored objects that no run and no remaining entry references
    are deleted (as runner runs prune does)."""
    from runner.artifacts import sweep_store
    from runner.cache.entries import clear_entries, referenced_objects

    if (stage is None) == (not everything):
        raise UsageError("cache clear: give --stage STAGE or --all (not both)")
    store = open_store(artifacts, storage_option)
    gone = clear_entries(store, stage=stage, dry_run=True)
    if gone and not dry_run and not yes:
        _confirm(len(gone), stage, store.url_of("cache"))
    if not dry_run:
        gone = clear_entries(store, stage=stage)
    swept = sweep_store(store, also_referenced=referenced_objects(
        store, excluding=gone if dry_run else ()), dry_run=dry_run, grace=grace * 3600)
    if as_json:
        out.print(json.dumps({"store": store.url_of("cache"), "dry_run": dry_run,
                              "deleted": gone, "objects_deleted": len(swept.deleted),
                              "object_bytes": swept.bytes, "objects_skipped": swept.skipped}),
                  markup=False)
        return
    verb = "would delete" if dry_run else "deleted"
    which = f" of stage {stage!r}" if stage else ""
    for rel in gone if dry_run else ():
        out.print(escape(rel))
    err.print(f"{verb} {plural(len(gone), 'entry', 'entries')}{escape(which)} in "
              f"{escape(store.url_of('cache'))}")
    if swept.skipped:
        err.print(f"[yellow]warning:[/] {escape(swept.skipped)}")
    else:
        young = (f"; kept {plural(len(swept.kept_young), 'unreferenced object')} newer "
                 f"than {grace:g} h" if swept.kept_young else "")
        err.print(f"{verb} {plural(len(swept.deleted), 'unreferenced object')} "
                  f"({swept.bytes:,} bytes){young}")


def _confirm(count: int, stage: str | None, where: str) -> None:
    """Ask on a terminal; elsewhere refuse without ``--yes`` (exit 2)."""
    what = f"{plural(count, 'step-cache entry', 'step-cache entries')}" + (
        f" of stage {stage!r}" if stage else "")
    if not sys.stdin.isatty():
        raise UsageError(f"cache clear would delete {what} in {where}: add --yes to do it "
                         "without asking (--dry-run lists them)")
    if not typer.confirm(f"delete {what} in {where}?", default=False, err=True):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``cache`` to the ``runner`` app."""
    app.add_typer(cache_app, name="cache")
