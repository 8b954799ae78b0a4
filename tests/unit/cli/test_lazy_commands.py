"""The root's commands are built when used (runner.cli.lazy): its help lists them as
they would list themselves, and click still finds, suggests and runs every one."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from runner.cli.lazy import Deferred, LazyCommands
from runner.cli.root import COMMANDS, app


def _root() -> Any:
    return typer.main.get_command(app)  # a new group each time: nothing built yet


def _root_help(root: Any, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    root.format_help(typer.Context(root, info_name="runner"), None)
    return capsys.readouterr().out


def test_the_roots_help_lists_each_command_as_the_built_command_would(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "150")
    lazy = _root()
    listed = _root_help(lazy, capsys)
    assert not any(lazy.commands.is_built(name) for name in COMMANDS)  # nothing imported
    built = _root()
    for name in list(built.commands):
        assert built.commands[name] is not None
    assert all(built.commands.is_built(name) for name in COMMANDS)
    assert listed == _root_help(built, capsys)  # same names, help, panels and order
    assert "unschedule" in listed


def test_every_command_a_module_registers_is_in_the_table() -> None:
    root = _root()
    commands = dict(root.commands.items())  # builds every module
    assert list(commands) == list(COMMANDS)
    for name, entry in COMMANDS.items():
        command = commands[name]
        first = inspect.cleandoc(command.short_help or command.help or "").split("\n\n")[0]
        assert first.strip() == entry.help, name  # what typer's rich help shows of it
        assert (getattr(command, "rich_help_panel", None) or None) == entry.panel, name


def test_a_command_is_built_with_the_others_of_its_module_only() -> None:
    root = _root()
    assert root.get_command(typer.Context(root), "list").name == "list"
    built = {name for name in COMMANDS if root.commands.is_built(name)}
    assert built == {n for n, e in COMMANDS.items() if e.module == COMMANDS["list"].module}


def test_click_still_runs_and_suggests_commands() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0 and '"pipelines"' in result.output
    result = runner.invoke(app, ["lis"])
    assert result.exit_code == 2
    assert "Did you mean 'list'?" in result.output


def test_lazy_commands_is_a_mapping_that_builds_on_lookup() -> None:
    made: list[str] = []

    def build(module: str) -> dict[str, str]:
        made.append(module)
        return {"a": f"{module}.a", "b": f"{module}.b", "extra": "x"}

    table = {"a": Deferred("m", "A."), "b": Deferred("m", "B."), "c": Deferred("n", "C.")}
    commands = LazyCommands(table, build=build, built={"given": "g"})
    assert list(commands) == ["a", "b", "c", "given"] and len(commands) == 4
    assert "c" in commands and "nope" not in commands and made == []
    assert commands["b"] == "m.b" and commands["a"] == "m.a" and made == ["m"]
    assert list(commands)[-1] == "extra"  # built alongside, listed after the table's
    assert commands.get("nope") is None
    with pytest.raises(KeyError):
        del commands["nope"]
    del commands["c"]
    assert "c" not in commands and made == ["m"]
    assert commands.listed("a", make=lambda n, e: e) == "m.a"
    table_only = LazyCommands(table, build=build)
    assert table_only.listed("c", make=lambda n, e: (n, e.help)) == ("c", "C.")
