"""Every command's help says what to type: each option and argument has help text,
a meaningful placeholder (``FILE``, ``KEY=VALUE``, a choice), none for a flag, and no
``<bool>``, ``<str>`` or ``{pipeline}`` (issue 15, "Small things users notice").

The command tree is walked in-process (typer builds it as ``runner`` does); each
command's help is read from ``runner ... --help`` in a subprocess, as a user sees it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from runner.cli import app

ROOT = Path(__file__).resolve().parents[3]
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*(=[A-Z]+)?$")
"""A placeholder that names what to type: FILE, RUN_ID, KEY=VALUE."""
TYPE_LABEL = re.compile(r"<(bool|str|int|float|Path|list\[[^\]]*\])>")
BRACES = re.compile(r"\{[A-Za-z_]+\}")


def _commands() -> Iterator[tuple[tuple[str, ...], typer.core.TyperCommand]]:
    root = typer.main.get_command(app)

    def walk(path: tuple[str, ...], command: object) -> Iterator[tuple[tuple[str, ...], object]]:
        yield path, command
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk((*path, name), sub)

    yield from walk((), root)  # type: ignore[misc]


COMMANDS = list(_commands())


def test_the_walk_covers_every_group_and_command() -> None:
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "run", "list", "validate", "graph", "runs", "runs list", "runs show",
            "runs prune", "artifacts get", "trace", "report", "submit", "schedule",
            "status", "logs", "cancel", "unschedule"} <= paths


@pytest.mark.parametrize(("path", "command"), COMMANDS,
                         ids=[" ".join(p) or "runner" for p, _ in COMMANDS])
def test_every_option_and_argument_says_what_it_is(path: tuple[str, ...],
                                                   command: typer.core.TyperCommand) -> None:
    ctx = typer.Context(command)
    for param in command.get_params(ctx):
        where = f"runner {' '.join(path)} {param.opts[0]}"
        assert (param.help or "").strip(), f"{where}: no help text"
        if param.param_type_name == "argument":
            assert PLACEHOLDER.match(param.metavar or ""), f"{where}: {param.metavar!r}"
        elif param.is_flag:
            assert not param.metavar, f"{where}: a flag with a placeholder"
        elif not param.type_descriptor.is_choice:
            assert PLACEHOLDER.match(param.metavar or ""), f"{where}: {param.metavar!r}"


def _help(*path: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "runner.cli", *path, "--help"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS],
                         ids=[" ".join(p) or "runner" for p, _ in COMMANDS])
def test_help_shows_no_type_labels_nor_braces(path: tuple[str, ...]) -> None:
    text = _help(*path)
    assert not TYPE_LABEL.search(text), text
    assert not BRACES.search(text), text


def test_brackets_in_help_text_are_shown_not_swallowed_as_markup() -> None:
    """``[env RUNNER_MANIFEST; default configs/manifest.json]`` vanished (rich markup)."""
    text = _help("run")
    assert re.search(r"Usage: .* run \[OPTIONS\] PIPELINE *\n", text)
    assert "[env RUNNER_MANIFEST; default configs/manifest.json]" in text
    assert re.search(r"--param +-p +KEY=VALUE ", text)
    assert "[default: inline, or processes when TV_ORCH_PARALLEL=1]" in text
