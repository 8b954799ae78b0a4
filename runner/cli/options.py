"""The options and arguments more than one command takes, declared once.

A command module declares only the options that are its own; the Kubernetes
commands' shared ones are in :mod:`runner.cli.kube.options`.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.models import ArgumentInfo

__all__ = [
    "AllowUnsignedOpt",
    "ArtifactsOpt",
    "JsonOpt",
    "ManifestOpt",
    "NoCacheOpt",
    "ParamOpt",
    "PathOpt",
    "PipelineArg",
    "RunIdArg",
    "StorageOpt",
    "options_command",
]

PipelineArg = Annotated[str, typer.Argument(
    metavar="PIPELINE", help="A pipeline of the manifest, by name (runner list shows them)",
    show_default=False)]
"""The ``PIPELINE`` argument of ``run``, ``graph``, ``submit`` and ``schedule``."""

RunIdArg = Annotated[str, typer.Argument(
    metavar="RUN_ID", help="A run's id, as runner run printed it (runner runs list shows "
    "them)", show_default=False)]

ManifestOpt = Annotated[str | None, typer.Option(
    "--manifest", "-m", metavar="FILE", show_default=False,
    help="Manifest path [env RUNNER_MANIFEST; default configs/manifest.json]")]

PathOpt = Annotated[list[Path] | None, typer.Option(
    "--path", metavar="FOLDER", show_default=False,
    help="A folder where the manifest's 'module:attr' paths are also found (besides "
    "installed packages and the manifest's folder); repeatable")]

NoCacheOpt = Annotated[bool, typer.Option(
    "--no-cache", help="Check in full, not trusting the outcome kept from the last check "
    "that passed (kept while the manifest, the modules it imported and the environment "
    "are unchanged) [env RUNNER_NO_CACHE]")]

ArtifactsOpt = Annotated[str | None, typer.Option(
    "--artifacts", metavar="URL", show_default=False,
    help="Artifact root, any fsspec URL [env RUNNER_ARTIFACTS; default data/artifacts]")]

StorageOpt = Annotated[list[str] | None, typer.Option(
    "--storage-option", metavar="KEY=VALUE", show_default=False,
    help="KEY=VALUE for the artifact store's fsspec filesystem (e.g. "
    "endpoint_url=http://127.0.0.1:9000; on Kubernetes credentials go in --secret-env); "
    "repeatable")]

AllowUnsignedOpt = Annotated[bool, typer.Option(
    "--allow-unsigned", help="Read store content that does not verify with the artifact "
    "key (an old or foreign store you trust), with a warning")]

ParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", "-p", metavar="KEY=VALUE", show_default=False,
    help="KEY=VALUE into the context's params (VALUE parsed as JSON when it can be); "
    "repeatable")]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")]


T = TypeVar("T")


def options_command(options: type[T], handler: Callable[[T], None]) -> Callable[..., None]:
    """A typer command whose parameters are the fields of the dataclass ``options``
    (each annotated with its ``typer.Option`` or ``typer.Argument``), calling
    ``handler`` with one ``options`` object: a command with many options is a
    dataclass and a function of it, not a long signature. Its help is the handler's
    docstring; arguments come first, then required options, then the rest in the
    order the fields are declared."""
    hints = typing.get_type_hints(options, include_extras=True)

    def rank(field: dataclasses.Field[Any]) -> int:
        if any(isinstance(m, ArgumentInfo)
               for m in getattr(hints[field.name], "__metadata__", ())):
            return 0
        return 1 if field.default is dataclasses.MISSING else 2

    fields = sorted(dataclasses.fields(options), key=rank)  # type: ignore[arg-type]
    params = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                annotation=hints[f.name],
                                default=inspect.Parameter.empty
                                if f.default is dataclasses.MISSING else f.default)
              for f in fields if f.init]

    def command(**given: Any) -> None:
        handler(options(**given))

    command.__name__ = handler.__name__
    command.__doc__ = handler.__doc__
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command
