"""The step cache in the engine: a cached run ends with the uncached run's context, a
re-run is all "cached", a change re-runs exactly what it reaches, branches are cached
where they run, and a fully cached group starts no worker."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field

from runner.artifacts import ArtifactStore
from runner.cache.fields import field_digest
from runner.cache.step_cache import StepCache, cache_for
from runner.context import Context, MergeRule
from runner.manifest import parse_manifest
from runner.orchestration.plan import Plan, compile_plan
from runner.orchestration.runner import DAGRunner
from runner.registry import StageRegistry
from tests.shapes import REG, base_context, plan_for

ROOT = Path(__file__).parents[3]
GROUP = ["log.a", ["add.x", ["add.y", "log.b"], "add.z"], "log.c"]
CALLS: list[str] = []


def _count(ctx: Any) -> Any:
    CALLS.append(f"count:{os.getpid()}")
    ctx.log(f"count:{len(ctx.audit_trail)}")
    return ctx


def _asks(ctx: Any) -> Any:
    ctx.log("asks")
    return ctx


REG.register("memo.always", _count, cache=False)
REG.register("memo.asks", _asks, cache=True)


def _cache(root: Path, *, default: bool = True) -> StepCache:
    return StepCache(ArtifactStore(str(root)), runner_version="test", default=default)


def _run(plan: Plan, cache: StepCache | None, executor: str = "inline", **kw: Any) -> Any:
    return DAGRunner(plan, executor=executor, cache=cache).run(kw.pop("context", None)
                                                               or base_context(**kw))


def _digests(ctx: Any) -> dict[str, str]:
    return {n: field_digest(v) for n, v in ctx.__dict__.items() if n not in ("run_id",
                                                                             "workspace")}


def _statuses(result: Any) -> dict[str, str]:
    return {r.path: r.status for r in result.records}


def test_a_cached_run_equals_the_uncached_one_and_a_rerun_is_all_cached(
        executor: str, tmp_path: Path) -> None:
    plan = plan_for(GROUP)
    plain = _run(plan, None, executor)
    first = _run(plan, _cache(tmp_path), executor)
    again = _run(plan, _cache(tmp_path), executor)
    assert _digests(first.context) == _digests(plain.context) == _digests(again.context)
    stages = [r for r in first.records if r.kind == "stage"]
    assert {r.status for r in stages} == {"succeeded"} and all(r.cache_key for r in stages)
    cached = {r.path: (r.status, r.cache_key) for r in again.records if r.kind == "stage"}
    assert {s for s, _ in cached.values()} == {"cached"}
    assert cached == {r.path: ("cached", r.cache_key) for r in stages}
    merges = [r for r in again.records if r.kind == "merge"]
    assert [r.status for r in merges] == ["succeeded"] and merges[0].cache_key is None
    assert all(r.done for r in again.records)


def test_a_stage_declared_cache_false_always_runs(tmp_path: Path) -> None:
    plan = plan_for(["log.a", "memo.always", "log.b"])
    _run(plan, _cache(tmp_path))
    CALLS.clear()
    again = _run(plan, _cache(tmp_path))
    assert _statuses(again) == {"p[0]": "cached", "p[1]": "succeeded", "p[2]": "cached"}
    assert len(CALLS) == 1 and again.records[1].cache_key is None


def test_undeclared_stages_follow_the_run_and_declared_ones_always_cache(
        tmp_path: Path) -> None:
    """A cache that does not cache by default (a run that did not ask, on a pipeline
    that did not either) still keeps the stage declared ``cache=True``."""
    plan = plan_for(["log.a", "memo.asks"])
    _run(plan, _cache(tmp_path, default=False))
    again = _run(plan, _cache(tmp_path, default=False))
    assert _statuses(again) == {"p[0]": "succeeded", "p[1]": "cached"}


def test_who_asks_for_the_cache(tmp_path: Path) -> None:
    store = lambda: ArtifactStore(str(tmp_path))  # noqa: E731
    plain, asked = plan_for(["log.a"]), plan_for(["log.a"], cache=True)
    asks = plan_for(["log.a", "memo.asks"])
    assert asked.cache is True and plain.cache is False
    for plan, run, expected in [(plain, None, None), (plain, True, True), (asked, None, True),
                                (asked, False, None), (asks, None, False),
                                (asks, False, None), (plain, False, None)]:
        made = cache_for(plan, store, cache=run, runner_version="test")
        assert (made.default if made is not None else None) is expected, (plan.cache, run)


class GenContext(Context):
    a: pd.DataFrame = Field(default_factory=lambda: pd.DataFrame({"v": [1.0, 2.0]}))
    b: pd.DataFrame = Field(default_factory=lambda: pd.DataFrame({"v": [3.0]}))
    c: pd.DataFrame = Field(default_factory=lambda: pd.DataFrame({"v": [0.0]}))
    d: pd.DataFrame = Field(default_factory=lambda: pd.DataFrame({"v": [0.0]}))
    notes: Annotated[list[str], MergeRule("append")] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)


FIELDS = ("a", "b", "c", "d")


def _gen_stage(reads: tuple[str, ...], write: str, n: int) -> Callable[[Any], Any]:
    def run(ctx: Any) -> Any:
        total = sum(float(getattr(ctx, r)["v"].sum()) for r in reads)
        setattr(ctx, write, pd.DataFrame({"v": [(total * n) % 97, float(n)]}))
        ctx.log(f"{write} <- {total:.3f}")
        return ctx
    return run


READS = st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True).map(tuple)
STAGE = st.tuples(READS, st.integers(1, 5))
BRANCH = st.lists(STAGE, min_size=1, max_size=2)
ITEM = st.one_of(STAGE, st.lists(BRANCH, min_size=2, max_size=3))


def _gen_plan(items: list[Any], write_on_main: int) -> Plan:
    """A pipeline of stages and groups; branch j writes field j only (no collision)."""
    registry, counter = StageRegistry(), iter(range(1000))

    def add(spec: tuple[tuple[str, ...], int], write: str) -> str:
        name = f"g{next(counter)}"
        # reads declared: an undeclared stage reads the audit trail too, whose lines a
        # group on threads merges in the order its branches finish
        registry.register(name, _gen_stage(spec[0], write, spec[1]), reads=spec[0])
        return name

    steps: list[Any] = []
    for i, item in enumerate(items):
        if isinstance(item, tuple):
            steps.append(add(item, FIELDS[(i + write_on_main) % 4]))
        else:
            steps.append([[add(s, FIELDS[j]) for s in branch] for j, branch in
                          enumerate(item)])
    doc = {"pipelines": {"gen": {"steps": steps, "context": f"{__name__}:GenContext"}}}
    return compile_plan(parse_manifest(json.dumps(doc)), "gen", registry=registry)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(items=st.lists(ITEM, min_size=1, max_size=4), shift=st.integers(0, 3),
       executor=st.sampled_from(["inline", "threads"]))
def test_generated_pipelines_cached_and_uncached_agree(items: list[Any], shift: int,
                                                      executor: str, tmp_path: Path) -> None:
    plan = _gen_plan(items, shift)
    root = tmp_path / f"store-{len(list(tmp_path.iterdir()))}"
    plain = DAGRunner(plan, executor=executor).run(GenContext())
    first = DAGRunner(plan, executor=executor, cache=_cache(root)).run(GenContext())
    again = DAGRunner(plan, executor=executor, cache=_cache(root)).run(GenContext())
    if executor == "threads":  # the audit trail's lines merge in the order branches finish
        for result in (plain, first, again):
            result.context.audit_trail.sort()
    assert _digests(first.context) == _digests(plain.context) == _digests(again.context)
    assert {r.status for r in again.records if r.kind == "stage"} == {"cached"}


class WiderContext(GenContext):
    e: int = 0


def _reach_plan(context: type[Context]) -> Plan:
    registry = StageRegistry()
    for name, reads, write in [("r.one", ("a",), "b"), ("r.two", ("c",), "d"),
                               ("r.three", ("b",), "c")]:
        registry.register(name, _gen_stage(reads, write, 2), reads=reads)
    registry.register("r.params", _params_stage, reads=["params"])
    doc = {"pipelines": {"r": {"steps": ["r.one", "r.two", "r.three", "r.params"],
                               "context": f"{__name__}:{context.__name__}"}}}
    return compile_plan(parse_manifest(json.dumps(doc)), "r", registry=registry)


def _params_stage(ctx: Any) -> Any:
    ctx.log(f"scale {ctx.params.get('scale', 1)}")
    return ctx


def test_a_change_reruns_exactly_the_steps_it_reaches(tmp_path: Path) -> None:
    """An input field's content, a parameter, the context type: the steps whose inputs
    it changes run again, the others hit."""
    plan = _reach_plan(GenContext)

    def run(plan: Plan = plan, **fields: Any) -> list[str]:
        ctx = plan.context_type(**fields)
        return list(_statuses(DAGRunner(plan, cache=_cache(tmp_path)).run(ctx)).values())

    assert run() == ["succeeded"] * 4
    assert run() == ["cached"] * 4
    # r.one reads a and writes b, which r.three reads; r.two reads c before r.three
    assert run(a=pd.DataFrame({"v": [7.0]})) == ["succeeded", "cached", "succeeded", "cached"]
    assert run(params={"scale": 2}) == ["cached", "cached", "cached", "succeeded"]
    assert run(_reach_plan(WiderContext)) == ["succeeded"] * 4


def test_a_changed_stage_source_reruns_it_and_what_follows(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """m.first's source changes: it and m.second (it reads what m.first wrote) run; m.third
    (same source, reads a field nothing changed) hits."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    source = textwrap.dedent("""
        def first(ctx):
            ctx.b = ctx.b.assign(v=ctx.b["v"] * FACTOR)
            return ctx

        def second(ctx):
            ctx.c = ctx.b.copy()
            return ctx

        def third(ctx):
            ctx.d = ctx.a.copy()
            return ctx
        """)
    plans = []
    module = tmp_path / "memo_edited.py"
    for factor in ("2", "30"):  # another size: the module is read again, not its old bytecode
        module.write_text(source.replace("FACTOR", factor), encoding="utf-8")
        sys.modules.pop("memo_edited", None)
        imported = importlib.import_module("memo_edited")
        registry = StageRegistry()
        registry.register("m.first", imported.first)
        registry.register("m.second", imported.second, reads=["b"])
        registry.register("m.third", imported.third, reads=["a"])
        doc = {"pipelines": {"m": {"steps": ["m.first", "m.second", "m.third"],
                                   "context": f"{__name__}:GenContext"}}}
        plans.append(compile_plan(parse_manifest(json.dumps(doc)), "m", registry=registry))
    sys.modules.pop("memo_edited", None)
    DAGRunner(plans[0], cache=_cache(tmp_path / "s")).run(GenContext())
    edited = DAGRunner(plans[1], cache=_cache(tmp_path / "s")).run(GenContext())
    assert list(_statuses(edited).values()) == ["succeeded", "succeeded", "cached"]
    plain = DAGRunner(plans[1]).run(GenContext())
    assert _digests(edited.context) == _digests(plain.context)


@pytest.mark.parametrize("dispatched", ["first", "last"])
def test_branches_hit_where_they_run(executor: str, dispatched: str, tmp_path: Path) -> None:
    """A branch with an uncached stage is dispatched: its other steps hit in the worker;
    a branch cached whole completes on the driver (whichever of the group's branches is
    dispatched: a part of the group goes to the workers)."""
    branches: list[Any] = [["add.y", "memo.always"], "add.x"]
    plan = plan_for(["log.a", branches if dispatched == "first" else branches[::-1]])
    plain = _run(plan, None, executor)
    _run(plan, _cache(tmp_path), executor)
    again = _run(plan, _cache(tmp_path), executor)
    by_name = {r.name: r for r in again.records}
    assert {n: r.status for n, r in by_name.items()} == {
        "log.a": "cached", "add.y": "cached", "memo.always": "succeeded", "add.x": "cached",
        "merge": "succeeded"}
    driver = os.getpid()
    assert by_name["add.x"].pid == driver
    if executor == "processes":
        assert by_name["add.y"].pid == by_name["memo.always"].pid != driver
    assert _digests(again.context) == _digests(plain.context)


_CACHED_GROUP = """
import json, multiprocessing, sys
import multiprocessing.forkserver as forkserver
from runner.artifacts import ArtifactStore
from runner.cache.step_cache import StepCache
from runner.orchestration.runner import DAGRunner
from tests.shapes import base_context, plan_for
from tests.unit.orchestration.test_memo import GROUP

cache = StepCache(ArtifactStore(sys.argv[1]), runner_version="test")
result = DAGRunner(plan_for(GROUP), executor=sys.argv[2], cache=cache).run(base_context())
print(json.dumps({
    "statuses": sorted({r.status for r in result.records if r.kind == "stage"}),
    "children": len(multiprocessing.active_children()),
    "forkserver": forkserver._forkserver._forkserver_pid,
    "ray": "ray" in sys.modules,  # never imported: never initialised, no task
}))
"""


@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_a_fully_cached_group_starts_no_worker(executor: str, tmp_path: Path) -> None:
    """In a fresh process: no forkserver, no worker process, Ray not even imported."""
    if executor == "ray":
        pytest.importorskip("ray")
    _run(plan_for(GROUP), _cache(tmp_path))  # filled inline: keys do not name the executor
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-c", _CACHED_GROUP, str(tmp_path), executor],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {"statuses": ["cached"], "children": 0, "forkserver": None, "ray": False}
