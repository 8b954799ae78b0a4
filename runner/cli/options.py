"""The options and arguments more than one command takes, declared once.

A command module declares only the options that are its own; the Kubernetes
commands' shared ones are in :mod:`runner.cli.kube.options`.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

import typer
from typer.models import ArgumentInfo

__all__ = [
    "AllowUnsignedOpt",
    "ArtifactsOpt",
    "CacheOpt",
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

CacheOpt = Annotated[bool | None, typer.Option(
    "--cache/--no-cache", show_default=False,
    help="Use the step cache for every stage that allows it (--cache: a step whose code "
    "and inputs are unchanged is restored from the artifact store, not run), or for none "
    "(--no-cache) [default: as the pipeline's \"cache\" and each stage's cache= say]")]
"""The step cache of ``run``, ``submit`` and ``schedule`` (not the check cache of
``list`` and ``validate``, whose flag is :data:`NoCacheOpt`)."""



class Options:
    """A command's options as one object: the fields are the class's annotations (each
    an ``Annotated`` typer option or argument, base classes' first), the defaults its
    values; immutable once made. Not a dataclass on purpose: making one runs generated
    code, milliseconds per class on every start of the command line (issue 14).
    ``HIDDEN`` names inherited fields that a subclass's command does not offer (they
    keep their class values)."""

    HIDDEN: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **given: Any) -> None:
        unknown = set(given) - set(self.field_names())
        if unknown:
            raise TypeError(f"{type(self).__name__}: no option {sorted(unknown)}")
        missing = [n for n in self.field_names() if n not in given and not hasattr(self, n)]
        if missing:
            raise TypeError(f"{type(self).__name__}: missing {missing}")
        self.__dict__.update(given)

    @classmethod
    def field_names(cls) -> list[str]:
        """Every field, base classes' first, in the order they are declared."""
        names: dict[str, None] = {}
        for klass in reversed(cls.__mro__):
            for name in inspect.get_annotations(klass):
                if name != "HIDDEN":
                    names[name] = None
        return list(names)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        given = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({given})"


OptionsT = TypeVar("OptionsT", bound=Options)


def options_command(options: type[OptionsT], handler: Callable[[OptionsT], None]
                    ) -> Callable[..., None]:
    """A typer command whose parameters are the fields of ``options`` (each annotated
    with its ``typer.Option`` or ``typer.Argument``), calling ``handler`` with one
    ``options`` object: a command with many options is a class of them and a
    function of it, not a long signature. Its help is the handler's docstring;
    arguments come first, then required options, then the rest in the order the
    fields are declared."""
    hints = typing.get_type_hints(options, include_extras=True)
    names = [n for n in options.field_names() if n not in options.HIDDEN]

    def rank(name: str) -> int:
        if any(isinstance(m, ArgumentInfo) for m in getattr(hints[name], "__metadata__", ())):
            return 0
        return 2 if hasattr(options, name) else 1

    params = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=hints[n],
                                default=getattr(options, n, inspect.Parameter.empty))
              for n in sorted(names, key=rank)]

    def command(**given: Any) -> None:
        handler(options(**given))

    command.__name__ = handler.__name__
    command.__doc__ = handler.__doc__
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command
