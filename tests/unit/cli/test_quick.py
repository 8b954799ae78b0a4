"""Which command lines are answered from a kept check before typer loads
(runner.cli.quick): the plain forms of ``list`` and ``validate`` only; everything
else is the app's to parse, check and refuse."""

from __future__ import annotations

import pytest

from runner.cli.quick import parse_plain


@pytest.mark.parametrize(("args", "parsed"), [
    (["validate"], ("validate", None, [], False)),
    (["list"], ("list", None, [], False)),
    (["validate", "-m", "m.json"], ("validate", "m.json", [], False)),
    (["list", "--json", "--manifest", "a.json", "-m", "b.json"], ("list", "b.json", [], True)),
    (["list", "--path", "x", "--path", "y/"], ("list", None, ["x", "y/"], False)),
])
def test_plain_command_lines(args: list[str], parsed: tuple[object, ...]) -> None:
    assert parse_plain(args) == parsed


@pytest.mark.parametrize("args", [
    [], ["run", "p"], ["--help"], ["list", "--help"], ["validate", "--json"],
    ["list", "--no-cache"], ["list", "-m"], ["list", "-m", ""], ["list", "-m", "--json"],
    ["list", "--manifest=m.json"], ["list", "extra"], ["--log-level", "INFO", "list"],
    ["list", "--log-format", "json"], ["validate", "--path"], ["list", "-mfile"],
])
def test_anything_else_goes_to_the_app(args: list[str]) -> None:
    assert parse_plain(args) is None
