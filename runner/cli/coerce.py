"""Typer's coercion of option values, without pydantic where it has nothing to check.

Typer (0.2x) turns every option's value into its annotated type through a pydantic
``TypeAdapter``, built when the option is processed, given or not. The first one
imports pydantic: about 0.1 s of a command that only reads a manifest. For the
annotations this command line uses (``str``, ``bool``, an ``Enum``,
``pathlib.Path`` and lists of them) the adapter only wraps typer's own code: a
``str`` or a ``bool`` comes back unchanged (and an option not given, None, is never
coerced), an ``Enum`` through ``coerce_cli_choice``, a path through
``coerce_cli_path``. So those are called directly; any other annotation, and any
value this path does not take as is, goes through typer's adapter: every result
and every error message stays typer's own (tests/unit/test_cli_coerce.py compares
the two on every option of the CLI), but for one thing: a choice that is not one
of an ``Enum``'s is refused with the close ones, ``(did you mean 'threads'?)``,
and without the ``Value error,`` pydantic puts before typer's message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

__all__ = ["direct_coercion", "install"]

Leaf = Callable[[Any, Any, Any], Any]
"""(value, param, ctx) -> the coerced value; raises when typer should decide."""


def _leaf(annotation: Any, info: Any) -> Leaf | None:
    """The direct coercion of one non-list annotation, or None (typer's adapter)."""
    from typer._param_types import coerce_cli_choice, coerce_cli_path

    if info.parser is not None:
        return None
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        choices = list(annotation)

        def choice(value: Any, param: Any, ctx: Any) -> Any:
            try:
                return coerce_cli_choice(value, choices=choices,
                                         case_sensitive=info.case_sensitive, ctx=ctx)
            except ValueError as exc:
                if type(value) is not str:
                    raise
                raise _refused(str(exc), value, [str(c.value) for c in choices],
                               param=param, ctx=ctx) from None
        return choice
    if annotation in (str, bool):
        def same(value: Any, param: Any, ctx: Any) -> Any:
            if type(value) is not annotation:
                raise TypeError(value)
            return value
        return same
    if annotation is Path and info.path_type is None:
        def path(value: Any, param: Any, ctx: Any) -> Any:
            if type(value) is not str or not value:
                raise TypeError(value)
            return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
        return path
    return None


def _refused(message: str, value: str, names: list[str], *, param: Any, ctx: Any
             ) -> Exception:
    """Typer's refusal of a choice (without pydantic's ``Value error,`` before it), with
    the close choices: ``'thread' is not one of ... (did you mean 'threads'?)``."""
    from typer._click.exceptions import BadParameter

    from runner.words import did_you_mean

    hint = did_you_mean(value, names, ignore_case=True)
    return BadParameter(message.removesuffix(".") + hint if hint else message,
                        ctx=ctx, param=param)


def direct_coercion(descriptor: Any) -> Leaf | None:
    """How to coerce a value for ``descriptor`` (typer's ``TypeDescriptor``) without
    pydantic, or None when only typer's adapter can."""
    if descriptor.file_annotation is not None:
        return None
    annotation, info = descriptor.annotation, descriptor.parameter_info
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        leaf = _leaf(item, info)
        if leaf is None:
            return None

        def each(value: Any, param: Any, ctx: Any) -> Any:
            items = value if isinstance(value, list | tuple) else [value]
            return [leaf(v, param, ctx) for v in items]
        return each
    return _leaf(annotation, info)


def install() -> None:
    """Make typer coerce the annotations above directly (no-op on a typer without
    this machinery, or when installed already)."""
    try:
        from typer import _coercion, core
    except ImportError:
        return
    original: Any = getattr(core, "build_runtime_param", None)
    base = getattr(_coercion, "RuntimeParam", None)
    if original is None or base is None or getattr(original, "direct", False):
        return

    @dataclass(frozen=True)
    class DirectRuntimeParam(base):  # type: ignore[misc, valid-type]
        """Coerces directly; whatever it does not take, typer's adapter does."""

        descriptor: Any
        leaf: Leaf

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            from typer._click.exceptions import BadParameter

            try:
                return self.leaf(value, param, ctx)
            except BadParameter:
                raise  # refused here, in typer's words
            except Exception:
                return original(self.descriptor)._coerce_value(value, param=param, ctx=ctx)

    def build_runtime_param(descriptor: Any) -> Any:
        leaf = direct_coercion(descriptor)
        if leaf is None:
            return original(descriptor)
        return DirectRuntimeParam(parameter_info=descriptor.parameter_info,
                                  annotation=descriptor.annotation, descriptor=descriptor,
                                  leaf=leaf)

    build_runtime_param.direct = True  # type: ignore[attr-defined]
    core.build_runtime_param = build_runtime_param  # type: ignore[attr-defined]
