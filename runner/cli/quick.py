"""``runner list`` and ``runner validate`` answered from a kept check, without typer.

When the check cache (:mod:`.cache`) holds the outcome of a check that passed and
nothing it rests on changed, the command prints it and is done: typer, click and
the command tree it builds are a third of such a command's start. Only a command
line in the plain form below takes this path; anything else (``--help``,
``--no-cache``, a global option, ``RUNNER_LOG_*`` set, an option it does not know, a
value it would have to check) goes through the app, which parses, checks and says
every error as always. What is printed is the app's own (:func:`say_validated`,
:func:`show_pipelines`, which the commands in :mod:`.pipelines` call too).

    runner validate [--manifest|-m FILE] [--path FOLDER]...
    runner list     [--manifest|-m FILE] [--path FOLDER]... [--json]
"""

from __future__ import annotations

import os
from typing import Any

from runner.cli.json_stdout import print_json
from runner.cli.output import err, out
from runner.words import plural

__all__ = ["answer_from_kept_check", "parse_plain", "say_validated", "show_pipelines"]

COMMANDS = ("list", "validate")
FLAGS = {"list": ("--json",), "validate": ()}
LOGGING_ENV = ("RUNNER_LOG_FORMAT", "RUNNER_LOG_LEVEL")
"""Checked by the app's global options: set, the app handles the command."""


def parse_plain(args: list[str]) -> tuple[str, str | None, list[str], bool] | None:
    """(command, manifest, folders, as_json) of a plain ``list``/``validate`` command
    line, else None (the app parses it)."""
    if not args or args[0] not in COMMANDS:
        return None
    command, manifest, folders, as_json = args[0], None, [], False
    rest = args[1:]
    i = 0
    while i < len(rest):
        arg, value = rest[i], rest[i + 1] if i + 1 < len(rest) else None
        if arg in FLAGS[command]:
            as_json, i = True, i + 1
            continue
        if arg not in ("--manifest", "-m", "--path") or not value or value.startswith("-"):
            return None
        if arg == "--path":
            folders.append(value)
        else:
            manifest = value
        i += 2
    return command, manifest, folders, as_json


def say_validated(found: dict[str, Any]) -> None:
    """``validate``'s answer: ``ok MANIFEST: N pipelines, M stages``."""
    err.print(f"[green]ok[/] {found['source']}: {plural(found['pipelines'], 'pipeline')}, "
              f"{plural(found['stages'], 'stage')}")


def show_pipelines(found: dict[str, Any], *, as_json: bool) -> None:
    """``list``'s answer: a table of the pipelines, or the JSON object."""
    if as_json:
        print_json(found)
        return
    from rich.table import Table

    table = Table("pipeline", "steps", "context", "description", box=None)
    for row in found["pipelines"]:
        table.add_row(row["name"], str(row["steps"]),
                      (row["context"] or "-").rpartition(":")[2], row["description"])
    out.print(table)


def answer_from_kept_check(args: list[str]) -> bool:
    """Answer a plain ``list`` or ``validate`` from its kept outcome; False when there
    is none, or the command line is not plain: the app then runs the command."""
    plain = parse_plain(args)
    if plain is None or any(os.environ.get(name) for name in LOGGING_ENV):
        return False
    command, manifest, folders, as_json = plain
    from runner.cli.cache import Check  # hashlib: not for the other commands
    from runner.manifest_json import default_manifest

    found = Check(command, manifest or default_manifest(), folders=folders).lookup()
    if not isinstance(found, dict):
        return False
    if command == "validate":
        say_validated(found)
    else:
        show_pipelines(found, as_json=as_json)
    return True
