"""The CLI's direct coercion of option values gives exactly what typer's adapters give.

runner.cli_coerce coerces str, bool, Enum and Path options (and lists of them) without
pydantic; every option of every command is checked here against typer's own
adapter, on good values and bad ones: same value, or the same error message.
"""

from __future__ import annotations

import re
import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import typer.main
from typer import _click, _coercion, core

from runner import cli_coerce
from runner.cli import app
from tests.cli_probe import probe

STRINGS = ["x", "", "a b", "--", "é", "configs/manifest.json"]
PATHS = ["data", "", ".", "/", "~/x", "a\\b", "no/such/dir/file.json", "-"]


def _options() -> list[tuple[str, Any, Any]]:
    found: list[tuple[str, Any, Any]] = []

    def walk(cmd: Any, name: str) -> None:
        for param in cmd.params:
            found.append((f"{name} {param.name}", cmd, param))
        for sub_name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{name} {sub_name}")

    walk(typer.main.get_command(app), "runner")
    return found


def _samples(annotation: Any) -> list[Any]:
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        one = _samples(item)
        return [[], one[:2], tuple(one[:3]), one[0], *([[v] for v in one])]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        values = [m.value for m in annotation]
        return [*values, *(v.upper() for v in values), "nope", "", next(iter(annotation))]
    if annotation is Path:
        return [*PATHS, Path("data")]
    if annotation is bool:
        return [True, False, "true", "no", "0", "", "maybe", 1]
    return [*STRINGS, b"bytes", 3]


def _outcome(runtime: Any, value: Any, param: Any, ctx: Any) -> tuple[str, Any]:
    try:
        return "value", runtime._coerce_value(value, param=param, ctx=ctx)
    except _click.exceptions.ClickException as exc:
        return type(exc).__name__, exc.format_message()


def _as_typers(outcome: tuple[str, Any]) -> tuple[str, Any]:
    """A refused choice in typer's words: with pydantic's ``Value error,`` and without
    the close choices runner.cli_coerce adds."""
    kind, shown = outcome
    if kind != "BadParameter" or "is not one of" not in shown:
        return outcome
    shown = re.sub(r" \(did you mean [^)]*\?\)$", ".", shown)
    return kind, re.sub(r": ('[^']*' is not one of)", r": Value error, \1", shown, count=1)


DIRECT = [(name, cmd, param) for name, cmd, param in _options()
          if cli_coerce.direct_coercion(param.type_descriptor) is not None]


def test_the_options_a_command_reads_are_coerced_directly() -> None:
    names = {name for name, _, _ in DIRECT}
    assert {"runner log_format", "runner log_level", "runner list manifest",
            "runner list path", "runner validate manifest", "runner run executor"} <= names


@pytest.mark.parametrize(("name", "cmd", "param"), DIRECT, ids=[n for n, _, _ in DIRECT])
def test_direct_coercion_is_typers(name: str, cmd: Any, param: Any) -> None:
    descriptor = param.type_descriptor
    ctx = _click.Context(cmd)
    direct = core.build_runtime_param(descriptor)
    assert direct is not None and getattr(core.build_runtime_param, "direct", False)
    typers = _coercion.build_runtime_param(descriptor)
    for value in _samples(descriptor.annotation):
        assert _as_typers(_outcome(direct, value, param, ctx)) == _outcome(
            typers, value, param, ctx), value


def test_a_command_that_reads_options_needs_no_pydantic(tmp_path: Path) -> None:
    code, modules, proc = probe(["--log-format", "text", "schema", "--help"], cwd=tmp_path,
                                out=tmp_path / "probe.json")
    assert code == 0, proc.stderr[-2000:]
    assert "pydantic" not in modules


def test_a_bad_choice_is_refused_in_typers_words() -> None:
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "--log-format", "jsn", "list"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    said = " ".join(proc.stderr.replace("│", " ").split())
    assert "'jsn' is not one of 'text', 'json' (did you mean 'json'?)" in said
    assert "Value error" not in said


def test_a_bad_choice_says_the_close_ones() -> None:
    """Yesterday: ``Value error, 'thread' is not one of ...`` without a suggestion."""
    for given in ("thread", "THREADS", "proc"):
        proc = subprocess.run([sys.executable, "-m", "runner.cli", "run", "demo", "-e", given],
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 2
        said = " ".join(proc.stderr.replace("│", " ").split())
        assert "Value error" not in said and "Traceback" not in said
        close = "processes" if given == "proc" else "threads"
        assert (f"'{given}' is not one of 'inline', 'threads', 'processes', 'ray' "
                f"(did you mean '{close}'?)") in said, said
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "--log-level", "WARN", "list"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert "(did you mean 'WARNING'?)" in proc.stderr
