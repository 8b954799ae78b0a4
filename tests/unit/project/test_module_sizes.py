"""The size rule: no module over 400 lines and no function over 60 in runner/, the
shipped stages aside (they are the users' kind of code: a long model is theirs to split)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
EXEMPT = ("runner/stages",)


def modules() -> list[Path]:
    return sorted(p for p in (ROOT / "runner").rglob("*.py")
                  if not any(p.is_relative_to(ROOT / folder) for folder in EXEMPT))


def test_the_rule_sees_the_package() -> None:
    found = {p.relative_to(ROOT).as_posix() for p in modules()}
    assert {"runner/cli/run.py", "runner/orchestration/execute.py",
            "runner/artifacts/checkpoint.py"} <= found
    assert not any(name.startswith("runner/stages/") for name in found)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_and_its_functions_fit_the_size_rule(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    long = [(node.name, node.end_lineno - node.lineno + 1)
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno is not None
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []
