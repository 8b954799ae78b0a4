"""ARCHITECTURE.md stays true to the code: every module (and test module) it names exists,
and every import-linter contract of pyproject.toml is quoted in it (with its layers,
verbatim).

Its "In progress" section names what is still to come, so
only that section may name paths that do not exist yet.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "ARCHITECTURE.md"
_PATH = re.compile(r"(?<![/\w.])runner/[A-Za-z0-9_./*]*")
_TEST_PATH = re.compile(r"(?<![/\w.])tests/[A-Za-z0-9_./]*\.py")
_MODULE = re.compile(r"(?<![/\w.])runner(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def _text() -> str:
    """The document without its "In progress" section (the plans, not the code)."""
    text = DOC.read_text(encoding="utf-8")
    return re.split(r"^## In progress$", text, maxsplit=1, flags=re.MULTILINE)[0]


def _contracts() -> list[dict[str, Any]]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        config = tomllib.load(fh)
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _exists(path: str) -> bool:
    """A file, a folder, or a glob (``runner/cli_*.py``) that matches something."""
    path = path.rstrip(".")
    if "*" in path:
        return any(ROOT.glob(path))
    return (ROOT / path).exists()


def test_every_named_path_exists() -> None:
    paths = sorted(set(_PATH.findall(_text())))
    assert paths, "the document names no runner/ path: the pattern is wrong"
    missing = [p for p in paths if not _exists(p)]
    assert missing == []


def test_every_named_test_module_exists() -> None:
    """The tests it points to (run these against a new executor ...) are where it says:
    test modules move with the package layout (tests/README.md)."""
    paths = sorted(set(_TEST_PATH.findall(_text())))
    assert "tests/integration/conftest.py" in paths, "the pattern finds no test path: it is wrong"
    assert [p for p in paths if not (ROOT / p).is_file()] == []


def _resolves(name: str) -> bool:
    """``runner.a.b`` is a module, or a module followed by attributes it defines."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        rel = Path(*parts[:cut])
        if (ROOT / rel.with_suffix(".py")).is_file() or (ROOT / rel / "__init__.py").is_file():
            obj: Any = importlib.import_module(module)
            for attr in parts[cut:]:
                if not hasattr(obj, attr):
                    return False
                obj = getattr(obj, attr)
            return True
    return False


def test_every_named_module_exists() -> None:
    names = sorted(set(_MODULE.findall(_text())))
    assert "runner.orchestration" in names, "the pattern finds no module: it is wrong"
    missing = [n for n in names if not _resolves(n)]
    assert missing == []


@pytest.mark.parametrize("contract", _contracts(), ids=lambda c: c["name"][:40])
def test_every_import_contract_is_quoted(contract: dict[str, Any]) -> None:
    text = " ".join(DOC.read_text(encoding="utf-8").split())  # wrapped lines joined
    assert contract["name"] in text
    if contract["type"] == "layers" and "containers" not in contract:
        for layer in contract["layers"]:
            assert f'"{layer}"' in text, f"layer {layer!r} of {contract['name']!r}"
