"""``runner validate``, ``list``, ``schema`` and ``graph``: what the manifest declares.

``list`` and ``validate`` are start-up targets: they read the manifest (and
``validate`` the stage modules) only when the outcome kept by :mod:`runner.cli.cache`
is out of date, and never load the store or the tracing; a plain command line whose
outcome is kept is answered before typer loads (:mod:`runner.cli.quick`).
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from runner.cli.cache import Check
from runner.cli.markup import escape
from runner.cli.options import ManifestOpt, NoCacheOpt, PathOpt, PipelineArg
from runner.cli.output import err
from runner.cli.parsing import open_sdk
from runner.cli.quick import say_validated, show_pipelines
from runner.errors import UsageError
from runner.manifest_json import default_manifest

if TYPE_CHECKING:
    from runner.manifest import Manifest

__all__ = ["register"]


class GraphFormat(str, Enum):
    mermaid = "mermaid"
    dot = "dot"
    svg = "svg"
    png = "png"


def _manifest(manifest: str | None, *, path: list[Path] | None) -> Manifest:
    """The manifest alone, as :attr:`QuantSDK.manifest` loads it, without the SDK's
    store, engine and tracing: what ``list`` and ``validate`` need."""
    from runner.manifest import load_manifest
    from runner.registry import add_module_folders

    add_module_folders(str(p) for p in path or ())  # after the manifest's own folder
    return load_manifest(manifest or default_manifest())


def _check(command: str, manifest: str | None, path: list[Path] | None, *,
           no_cache: bool) -> Check:
    return Check(command, manifest or default_manifest(), folders=path or (),
                 enabled=not no_cache)


def validate(manifest: ManifestOpt = None, path: PathOpt = None,
             no_cache: NoCacheOpt = False) -> None:
    """Check the manifest: JSON, schema, names, cycles, adapters, collisions."""
    check = _check("validate", manifest, path, no_cache=no_cache)
    found = check.lookup()
    if found is None:
        parsed = _manifest(manifest, path=path)
        from runner.orchestration.contracts import check_manifest_reads
        from runner.orchestration.plan import compile_all  # the stages import pandas anyway

        plans = compile_all(parsed)
        check_manifest_reads(parsed, plans)
        stages = {s.name for p in plans.values() for s in p.stages}
        found = {"source": parsed.source, "pipelines": len(plans), "stages": len(stages)}
        check.keep(found)
    say_validated(found)


def list_pipelines(manifest: ManifestOpt = None, path: PathOpt = None,
                   no_cache: NoCacheOpt = False,
                   as_json: Annotated[bool, typer.Option(
                       "--json", help="Print one JSON object on stdout: the manifest and "
                       "its pipelines (name, steps, context, description)")] = False) -> None:
    """List the manifest's pipelines."""
    check = _check("list", manifest, path, no_cache=no_cache)
    found = check.lookup()
    if not isinstance(found, dict):
        parsed = _manifest(manifest, path=path)
        found = {"manifest": parsed.source, "pipelines": [
            {"name": name, "steps": len(spec.steps), "context": spec.context,
             "description": spec.description or ""}
            for name, spec in parsed.pipelines.items()]}
        check.keep(found)
    show_pipelines(found, as_json=as_json)


def schema() -> None:
    """Print the manifest's JSON Schema."""
    from runner.manifest import dump_schema

    sys.stdout.write(dump_schema())


def graph(
    pipeline: PipelineArg,
    manifest: ManifestOpt = None,
    fmt: Annotated[GraphFormat, typer.Option("--format", "-f", help="Output format")]
    = GraphFormat.mermaid,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE",
        help="Write to this file [default: mermaid and dot to stdout, "
        "svg and png to PIPELINE.svg/.png]", show_default=False)] = None,
    path: PathOpt = None,
) -> None:
    """Draw a pipeline's DAG (Mermaid text; DOT, SVG or PNG with Graphviz)."""
    from runner.orchestration.graph import render_dot, render_mermaid

    plan = open_sdk(manifest, path=path).plan(pipeline)
    if fmt in (GraphFormat.mermaid, GraphFormat.dot):
        text = render_mermaid(plan) if fmt is GraphFormat.mermaid else render_dot(plan)
        if output is None:
            sys.stdout.write(text)
            return
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--output {output}: cannot write it: {exc.strerror or exc}"
                             ) from exc
        err.print(f"wrote {escape(str(output))}")
        return
    import shutil
    import subprocess

    dot = shutil.which("dot")
    if dot is None:
        raise UsageError("--format svg/png needs Graphviz's 'dot' program: install it "
                         "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install "
                         "graphviz) or use --format mermaid|dot")
    target = output or Path(f"{pipeline}.{fmt.value}")
    subprocess.run([dot, f"-T{fmt.value}", "-o", str(target)], input=render_dot(plan),
                   text=True, check=True)
    err.print(f"wrote {escape(str(target))}")


def register(app: typer.Typer) -> None:
    """Add these commands to the ``runner`` app."""
    app.command()(validate)
    app.command("list")(list_pipelines)
    app.command()(schema)
    app.command()(graph)
