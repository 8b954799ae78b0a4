"""A stage's code version follows what it runs: its own source, the helpers and constants
it reaches in the user's code; not the other stages of its module. ``@stage(version=)``
replaces it; ``@stage(cache=False)`` is recorded for the cache to honour."""

from __future__ import annotations

import importlib
import linecache
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runner.cache.code import code_version
from runner.errors import RegistryError
from runner.registry import StageEntry, StageRegistry, stage

MODULE = '''
SCALE = {scale}


def helper(x):
    return x * SCALE{helper_extra}


class Tool:
    size: {annotation}

    def apply(self, x):
        return x{tool_extra}


def first(context):
    return helper(context){first_extra}


def second(context):
    return Tool().apply(context){second_extra}
'''

Load = Callable[..., dict[str, str]]


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Load]:
    """Write the module with some edits, import it afresh, return both stages' versions."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"cache_code_{tmp_path.name[-12:].replace('-', '_')}"

    def _load(**edits: str) -> dict[str, str]:
        fields = {"annotation": "int", "scale": "2", "helper_extra": "", "tool_extra": "",
                  "first_extra": "", "second_extra": "", **edits}
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE.format(**fields)))
        sys.modules.pop(name, None)
        importlib.invalidate_caches()
        linecache.checkcache()
        module = importlib.import_module(name)
        return {fn: code_version(StageEntry(fn, getattr(module, fn)))
                for fn in ("first", "second")}

    yield _load
    sys.modules.pop(name, None)


def test_stable_for_the_same_code(load: Load) -> None:
    assert load() == load()
    assert all(v.startswith("source:") for v in load().values())


def test_an_edit_changes_only_the_stages_that_reach_it(load: Load) -> None:
    base = load()
    edited = load(first_extra=" + 0")
    assert edited["first"] != base["first"] and edited["second"] == base["second"]
    helper = load(helper_extra=" + 1")  # only first calls helper
    assert helper["first"] != base["first"] and helper["second"] == base["second"]
    method = load(tool_extra=" - 1")  # only second uses Tool
    assert method["second"] != base["second"] and method["first"] == base["first"]
    annotated = load(annotation="str")  # a class's annotation
    assert annotated["second"] != base["second"] and annotated["first"] == base["first"]
    constant = load(scale="3")  # a module constant helper reads
    assert constant["first"] != base["first"] and constant["second"] == base["second"]


def test_a_closure_and_a_function_without_source() -> None:
    def make(n: int) -> Callable[[object], object]:
        def inner(context: object) -> object:
            return (context, n)
        return inner

    assert code_version(StageEntry("a", make(1))) != code_version(StageEntry("a", make(2)))
    built: dict[str, object] = {}
    exec("def made(context):\n    return context\n", built)  # a function without a source file
    assert code_version(StageEntry("m", built["made"])).startswith("source:")  # type: ignore[arg-type]


def test_an_explicit_version_and_cache_false() -> None:
    registry = StageRegistry()

    @stage("v.one", version="2024-06", registry=registry)
    def one(context: object) -> object:
        return context

    @stage("v.two", cache=False, registry=registry)
    def two(context: object) -> object:
        return context

    entry = registry.get("v.one")
    assert entry is not None and code_version(entry) == "explicit:2024-06"
    assert entry.cache is None  # follows the run and the pipeline
    other = registry.get("v.two")
    assert other is not None and other.cache is False and other.version is None
    with pytest.raises(RegistryError, match="version must be a non-empty string"):
        registry.register("v.three", one, version="")
    with pytest.raises(RegistryError, match="cache must be True, False or None"):
        registry.register("v.four", one, cache="yes")  # type: ignore[arg-type]


def test_the_shipped_stages_have_distinct_versions() -> None:
    import runner.stages  # noqa: F401 - registers them
    from runner.registry import REGISTRY

    names = ["alpha.policy", "alpha.synthesis", "alpha.inference", "risk.optimize"]
    versions = {code_version(e) for n in names if (e := REGISTRY.get(n)) is not None}
    assert len(versions) == len(names)


SEEDED = '''
KINDS = frozenset({"alpha", "beta", "gamma", "delta", "epsilon"})


def seeded(context):
    return context in KINDS or context in {"one", "two", "three", "four", "five"}
'''

VERSIONS = ("import runner.stages, seeded_stage; from runner.registry import REGISTRY, "
            "StageEntry; from runner.cache.code import code_version; "
            "print(sorted(code_version(e) for e in REGISTRY), "
            "code_version(StageEntry('s', seeded_stage.seeded)))")


def test_the_same_versions_in_another_process_and_hash_seed(tmp_path: Path) -> None:
    """A laptop and a pod (same code, same Python) agree: sets of constants are sorted,
    no address or hash-seeded order gets into a version."""
    (tmp_path / "seeded_stage.py").write_text(SEEDED)
    path = ":".join([str(tmp_path), *sys.path])
    outs = {subprocess.run([sys.executable, "-c", VERSIONS], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin",
                                            "PYTHONDONTWRITEBYTECODE": "1",
                                            "PYTHONPATH": path}).stdout
            for seed in ("1", "2", "3")}
    assert len(outs) == 1 and "source:" in outs.pop()


def test_a_shipped_stage_has_one_version_whatever_core_share_its_process_runs_with(
        ) -> None:
    """A worker process runs its branch inside the executor's core share (a module global
    of the engine's that the stages' thread limits read): the version must not follow
    it, or a branch in a worker gets another key than the same step on the driver (a
    miss where it should hit, and entries a driver never finds)."""
    import runner.stages  # noqa: F401 - registers them
    from runner.cache import code
    from runner.orchestration.native_threads import sharing_cores
    from runner.registry import REGISTRY

    entry = REGISTRY.get("alpha.inference_model_b")
    assert entry is not None

    def fresh() -> str:
        code._CACHE.clear()
        return code_version(entry)

    on_the_driver = fresh()
    with sharing_cores(lambda: 1):  # as the processes executor's worker runs a branch
        in_a_worker = fresh()
    assert in_a_worker == on_the_driver
    described = {name for name, _ in code._closure(entry.fn)}
    assert "runner.stages.alpha:_make_gbm" in described  # the stage's own helpers count
    assert not [n for n in described if n.startswith("runner.orchestration")]  # the engine not
