"""Help that shows what to type: the command classes of every ``runner`` command.

Typer's help (0.2x) labels each value with its Python type, ``<str>``,
``<list[Path]>``, and each flag ``<bool>``; a required argument reads ``{pipeline}``
on the usage line; and help text is rich markup, so ``[default: x]`` written in a
help string silently disappears. :class:`RunnerTyper` makes its groups and commands
with the classes below, which at construction (nothing is imported for it) give:

* an argument its name in capitals, ``runner run [OPTIONS] PIPELINE``, with no type;
* a flag no placeholder at all;
* an option that takes a value its declared metavar (``--param KEY=VALUE``), or its
  long name in capitals (``--run-id RUN_ID``); choices stay ``<inline|threads>``;
* help text as written, brackets included (escaped for rich when the help is shown:
  a command that only runs never imports rich for it);
* a docstring's paragraphs as paragraphs: typer keeps the line breaks of a help text
  (0.2x), so a docstring wrapped in the source would break again mid-sentence in a
  terminal narrower than its lines; its lines are joined (:func:`reflow`), but in a
  paragraph laid out by hand (an indented line, a list, ``\b``).

tests/unit/test_cli_help_text.py walks the whole command tree.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from runner.cli.markup import escape

__all__ = ["RunnerCommand", "RunnerGroup", "RunnerTyper", "option_as_value", "reflow",
           "tidy_param"]

F = TypeVar("F", bound=Callable[..., Any])


class _NamedArgument(TyperArgument):
    """An argument shown by its name (``PIPELINE``), required or ``[OPTIONAL]``."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


def reflow(text: str | None) -> str | None:
    """``text`` with the line breaks inside each paragraph made spaces, but in a
    paragraph laid out by hand: one that starts with ``\b`` (click's "keep as is"), or
    has a line that starts with a space, ``-``, ``*`` or ``$``."""
    if not text or "\n" not in text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        p if p.startswith("\b") or any(line[:1] in (" ", "-", "*", "$")
                                       for line in p.splitlines()[1:])
        else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs)


def tidy_param(param: Any) -> None:
    """Give ``param`` (a typer argument or option) the help display described above."""
    if getattr(param, "_runner_tidy", False):
        return
    param._runner_tidy = True
    if isinstance(param, TyperArgument):
        if param.metavar is None:
            param.metavar = (param.name or "value").upper()
        if type(param) is TyperArgument:
            param.__class__ = _NamedArgument  # the same object, displayed by its name
        return
    if not isinstance(param, TyperOption) or param.metavar is not None:
        return
    if param.is_flag or param.count:
        param.metavar = ""  # a switch: nothing to type after it
    elif not param.type_descriptor.is_choice:
        longest = max(param.opts, key=len).lstrip("-")
        param.metavar = longest.replace("-", "_").upper()


def _literal_help(param: Any) -> None:
    """Make ``param``'s help literal text, not rich markup (once)."""
    if param.help and not getattr(param, "_runner_literal", False):
        param.help = escape(param.help)
        param._runner_literal = True


def option_as_value(params: list[Any], args: list[str]) -> tuple[str, str] | None:
    """An option that takes a value followed by another of the command's options, as
    ``(option, word)``: ``--artifacts -q`` is an empty shell variable between the two far
    more often than a folder named ``-q`` (which ``--artifacts=-q`` still gives)."""
    names: set[str] = set()
    valued: set[str] = set()
    for param in params:
        if getattr(param, "param_type_name", None) != "option":
            continue
        names.update((*param.opts, *param.secondary_opts))
        if not (param.is_flag or param.count):
            valued.update(param.opts)
    for word, after in itertools.pairwise(args):
        if word == "--":
            break
        if word in valued and after in names:
            return word, after
    return None


def _noted(parse: Callable[[Any, list[str]], list[str]], ctx: Any, args: list[str]
           ) -> list[str]:
    """``parse(ctx, args)``, its usage error remembered for ``--json``'s error object; an
    option given another option as its value (:func:`option_as_value`) is one."""
    from typer._click.exceptions import ClickException, UsageError

    from runner.cli.json_stdout import note_error

    try:
        mistaken = option_as_value(ctx.command.get_params(ctx), args)
        if mistaken is not None:
            option, word = mistaken
            raise UsageError(f"Option '{option}' needs a value, but the option '{word}' "
                             f"follows it (an empty variable in between?); a value that "
                             f"starts with '-' is given as {option}={word}", ctx)
        return parse(ctx, args)
    except ClickException as exc:
        note_error(exc.format_message())
        raise


class _Tidy:
    """What :class:`RunnerCommand` and :class:`RunnerGroup` share: usage errors noted
    for ``--json``, and every parameter (``--help`` included) shown as described above."""

    params: list[Any]

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return _noted(super().parse_args, ctx, args)  # type: ignore[misc]

    help: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)
        for param in self.params:
            tidy_param(param)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.get_params(ctx):  # type: ignore[attr-defined]
            _literal_help(param)
        super().format_help(ctx, formatter)  # type: ignore[misc]

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            tidy_param(option)
        return option


class RunnerCommand(_Tidy, TyperCommand):
    """A typer command whose help shows what to type (see the module docstring)."""


class RunnerGroup(_Tidy, TyperGroup):
    """A typer group whose own options are shown as :class:`RunnerCommand`'s are."""


class RunnerTyper(typer.Typer):
    """``typer.Typer`` making :class:`RunnerGroup` groups and :class:`RunnerCommand`
    commands unless told otherwise."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("cls", RunnerGroup)
        super().__init__(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        kwargs["cls"] = kwargs.get("cls") or RunnerCommand
        return super().command(*args, **kwargs)

