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
    assert "[default: inline; with TV_ORCH_PARALLEL=1, ray when Ray is installed, else " \
        "processes]" in " ".join(text.split())


def test_the_executor_help_says_what_tv_orch_parallel_selects(monkeypatch) -> None:
    """The ``--executor`` help said TV_ORCH_PARALLEL=1 selects processes; the code
    picks Ray when it is installed (it is, in the test environment), processes
    otherwise: the help now says both, as the code decides."""
    import importlib.util

    from runner.orchestration.executors import parallel_default

    assert importlib.util.find_spec("ray") is not None
    assert parallel_default() == "ray"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    assert parallel_default() == "processes"
    text = " ".join(_help("run").split())
    assert "TV_ORCH_PARALLEL=1, ray when Ray is installed, else processes" in text


@pytest.mark.parametrize(("path", "command"), COMMANDS,
                         ids=[" ".join(p) or "runner" for p, _ in COMMANDS])
def test_help_paragraphs_flow_to_the_terminals_width(path: tuple[str, ...],
                                                     command: typer.core.TyperCommand) -> None:
    """A docstring wrapped in the source is one paragraph on screen: no line break of the
    source's survives inside a paragraph (typer keeps them), unless laid out by hand."""
    for paragraph in (command.help or "").split("\n\n"):
        lines = paragraph.splitlines()
        by_hand = paragraph.startswith("\b") or any(line[:1] in " -*$" for line in lines[1:])
        assert len(lines) == 1 or by_hand, f"runner {' '.join(path)}: {paragraph!r}"


def test_reflow_joins_wrapped_lines_and_keeps_what_was_laid_out() -> None:
    from runner.cli.format import reflow

    assert reflow("Delete old runs,\n    then objects.\n\n    More\n    here.") == (
        "Delete old runs, then objects.\n\nMore here.")
    listed = "Steps:\n- one\n- two"
    assert reflow(listed) == listed and reflow("\bkeep\nthis") == "\bkeep\nthis"
    assert reflow(None) is None and reflow("one line") == "one line"

