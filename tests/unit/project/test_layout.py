"""The test suite mirrors the package (tests/README.md): a test module of ``tests/unit/`` or
``tests/integration/`` sits in a folder named for the runner package it tests (or one of
the few documented folders), so where a test lives says what it tests.

A module in the wrong place fails here with a message that says where it belongs.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TESTS = ROOT / "tests"
README = TESTS / "README.md"

#: Layers whose test modules live in one folder per package.
MIRRORED = ("unit", "integration")
#: The end-to-end layer tests the whole product: its modules stay flat.
FLAT = "e2e"

#: Folders that name no runner package, each documented in tests/README.md.
DOCUMENTED = {
    "core": "the modules at runner/'s root (manifest, registry, context, merge, errors, sdk ...)",
    "deploy": "what ships runner: charts/, docker/, scripts/container-e2e.sh, tests/containers/",
    "project": "the repository itself: ARCHITECTURE.md, benchmarks/, the test suite's own rules",
}

#: Packages being made out of modules (issue 16): their folder is a home while the code it
#: tests is still at its old place; once ``runner/<name>/`` exists it is a package like the rest.
def homes() -> set[str]:
    """The folder names a mirrored test module may sit in."""
    packages = {p.parent.name for p in (ROOT / "runner").glob("*/__init__.py")}
    return packages | set(DOCUMENTED)


def _imported_homes(path: Path) -> Counter[str]:
    """The homes of the runner modules ``path`` imports: ``runner.X...`` is X's folder when X
    is one, else ``core`` (a module at runner/'s root)."""
    known = homes()
    found: Counter[str] = Counter()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                 else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "runner" and len(parts) > 1:
                found[parts[1] if parts[1] in known else "core"] += 1
    return found


def where_it_belongs(path: Path, *, layer: str) -> str:
    """A one-line hint: the folder for ``path``, from what it imports of runner."""
    layer = layer if layer in MIRRORED else "unit"
    found = _imported_homes(path)
    if found:
        home = found.most_common(1)[0][0]
        return (f"it imports mostly runner's {home!r}: move it to tests/{layer}/{home}/ "
                f"(git mv)")
    return (f"it imports nothing of runner: move it to the folder of what it tests, one of "
            f"{', '.join(sorted(DOCUMENTED))} (tests/README.md) (git mv)")


def misplaced(tests: Path) -> list[str]:
    """One line per test module under ``tests`` that is not where the layout says."""
    known = homes()
    problems = []
    for path in sorted(tests.rglob("test_*.py")):
        rel = path.relative_to(tests)
        layer, *folders = rel.parts[:-1] or ("",)
        hint = where_it_belongs(path, layer=layer)
        if layer not in (*MIRRORED, FLAT):
            problems.append(f"tests/{rel}: not in a layer (tests/unit, tests/integration or "
                            f"tests/e2e); {hint}")
        elif layer == FLAT:
            if folders:
                problems.append(f"tests/{rel}: end-to-end tests stay flat in tests/{FLAT}/")
        elif not folders:
            problems.append(f"tests/{rel}: not in a package folder; {hint}")
        elif folders[0] not in known:
            problems.append(f"tests/{rel}: {folders[0]!r} names no runner package nor a folder "
                            f"of tests/README.md; {hint}")
    return problems


def missing_init(tests: Path) -> list[str]:
    """Folders holding test modules without an ``__init__.py``: ``tests`` is a package (its
    helpers are imported as ``tests.integration.conftest``), and two test modules of the
    same name in two folders need their folders to be packages."""
    folders = {p.parent for p in tests.rglob("test_*.py")}
    lacking = {f for folder in folders for f in (folder, *folder.parents)
               if f.is_relative_to(tests) and not (f / "__init__.py").is_file()}
    return sorted(f"tests/{f.relative_to(tests)}/" if f != tests else "tests/"
                  for f in lacking)


def test_every_test_module_sits_in_its_packages_folder() -> None:
    assert misplaced(TESTS) == []


def test_every_test_folder_is_a_package() -> None:
    assert missing_init(TESTS) == []


def test_the_documented_folders_are_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    assert [name for name in DOCUMENTED if f"`{name}/`" not in text] == []


#: Files outside the tests that name test modules by path.
NAMING = ("README.md", "benchmarks/README.md", "Makefile", ".ci/run", "scripts/*.sh",
          "tests/README.md")
_TEST_PATH = re.compile(r"(?<![/\w.])tests/[A-Za-z0-9_./]*\.py")


def test_every_test_module_named_by_path_exists() -> None:
    """Test modules move with the layout: the READMEs and scripts that name one follow."""
    named = {(str(f.relative_to(ROOT)), path) for pattern in NAMING for f in ROOT.glob(pattern)
             for path in _TEST_PATH.findall(f.read_text(encoding="utf-8"))}
    assert ("README.md", "tests/unit/cli/test_cli.py") in named, "the pattern is wrong"
    assert sorted((f, p) for f, p in named if not (ROOT / p).is_file()) == []


def _write(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(("where", "source", "said"), [
    ("unit/test_x.py", "from runner.orchestration.plan import compile_plan\n",
     "tests/unit/test_x.py: not in a package folder; it imports mostly runner's "
     "'orchestration': move it to tests/unit/orchestration/ (git mv)"),
    ("integration/test_x.py", "import runner.artifacts.store\nfrom runner.errors import E\n"
     "from runner.artifacts import ArtifactStore\n",
     "tests/integration/test_x.py: not in a package folder; it imports mostly runner's "
     "'artifacts': move it to tests/integration/artifacts/ (git mv)"),
    ("unit/plan/test_x.py", "from runner.manifest import parse_manifest\n",
     "tests/unit/plan/test_x.py: 'plan' names no runner package nor a folder of "
     "tests/README.md; it imports mostly runner's 'core': move it to tests/unit/core/ (git mv)"),
    ("test_x.py", "",
     "tests/test_x.py: not in a layer (tests/unit, tests/integration or tests/e2e); it imports "
     "nothing of runner: move it to the folder of what it tests, one of core, deploy, project "
     "(tests/README.md) (git mv)"),
    ("e2e/k8s/test_x.py", "", "tests/e2e/k8s/test_x.py: end-to-end tests stay flat in tests/e2e/"),
])
def test_a_module_in_the_wrong_place_is_told_where_it_belongs(
        tmp_path: Path, where: str, source: str, said: str) -> None:
    _write(tmp_path / "unit" / "k8s" / "test_fine.py")
    _write(tmp_path / "e2e" / "test_fine.py")
    _write(tmp_path / where, source)
    assert misplaced(tmp_path) == [said]


def test_a_folder_without_init_is_named(tmp_path: Path) -> None:
    for folder in ("", "unit", "unit/k8s"):
        _write(tmp_path / folder / "__init__.py")
    _write(tmp_path / "unit" / "k8s" / "test_fine.py")
    _write(tmp_path / "unit" / "stages" / "test_x.py")
    assert missing_init(tmp_path) == ["tests/unit/stages/"]
