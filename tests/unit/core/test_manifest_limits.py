"""Manifests that blow up: diamonds of includes, deep groups, long chains, huge numbers.

Linearity is shown by counting work (pipelines compiled, references read), never
by timing it; the times are printed (``pytest -s``) for the curious.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runner.manifest_graph as manifest_graph
import runner.orchestration.plan.compiler as plan_compiler
from runner.errors import ManifestError, PlanError, Problem
from runner.manifest import (
    MAX_NAME_LENGTH,
    MAX_NESTING,
    MAX_PLAN_STEPS,
    Manifest,
    parse_manifest,
)
from runner.orchestration.graph import outline, render_dot, render_mermaid
from runner.orchestration.plan import Plan, compile_all, compile_plan
from runner.registry import StageRegistry
from runner.sdk import QuantSDK

ROOT = Path(__file__).resolve().parents[3]
STAGES = {"s": "tests.shapes:log_a"}
CONTEXT = "tests.shapes:ShapeContext"


def diamond(levels: int) -> dict[str, Any]:
    """L0 includes L1 twice, L1 includes L2 twice, ...: 2^levels stages in L0."""
    pipelines: dict[str, Any] = {f"L{i}": {"steps": [f"L{i + 1}", f"L{i + 1}"]}
                                 for i in range(levels)}
    pipelines[f"L{levels}"] = {"steps": ["s"]}
    return {"pipelines": pipelines}


def chain(length: int) -> dict[str, Any]:
    """c0 includes c1, which includes c2, ... down to a stage."""
    pipelines: dict[str, Any] = {f"c{i}": {"steps": [f"c{i + 1}"]} for i in range(length)}
    pipelines[f"c{length}"] = {"steps": ["s"]}
    return {"pipelines": pipelines}


def nested_groups(depth: int) -> str:
    """One step that is ``depth`` parallel groups, each one branch holding the next."""
    step = "[[" * depth + '"s"' + "]]" * depth
    return json.dumps({"pipelines": {"p": {"steps": ["PLACEHOLDER"]}}}
                      ).replace('"PLACEHOLDER"', step)


def mixed(pipelines: int) -> dict[str, Any]:
    """Each pipeline runs a stage, then a group whose first branch includes the next
    pipeline: two levels (group + include) per pipeline."""
    doc: dict[str, Any] = {f"m{i}": {"steps": ["s", [[f"m{i + 1}"], "s"]]}
                           for i in range(pipelines)}
    doc[f"m{pipelines}"] = {"steps": ["s"]}
    return {"pipelines": doc}


def for_cli(doc: dict[str, Any]) -> str:
    """The manifest with its stage importable in a fresh process, every pipeline on the
    tests' context type."""
    pipelines = {name: {**spec, "context": CONTEXT} for name, spec in doc["pipelines"].items()}
    return json.dumps({"pipelines": pipelines, "stages": STAGES})


def huge_number(digits: int) -> str:
    return ('{"pipelines": {"p": {"steps": ["s"], "resources": {"s": {"max_retries": '
            + "9" * digits + "}}}}}")


def registry() -> StageRegistry:
    reg = StageRegistry()
    reg.register("s", lambda ctx: ctx)
    return reg


def problems_of(text: str) -> tuple[Problem, ...]:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, source="m.json")
    return info.value.problems


@pytest.fixture
def count_work(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many pipelines the manifest check reads and how many the compiler builds."""
    counts = {"refs_read": 0, "pipelines_read": 0, "compiled": 0}
    real_iter_refs, real_template = manifest_graph.iter_refs, plan_compiler._Template

    def iter_refs(steps: Any, loc: Any) -> Iterator[manifest_graph.Ref]:
        counts["pipelines_read"] += 1
        for ref in real_iter_refs(steps, loc):
            counts["refs_read"] += 1
            yield ref

    def template(*args: Any) -> Any:
        counts["compiled"] += 1
        return real_template(*args)

    monkeypatch.setattr(manifest_graph, "iter_refs", iter_refs)
    monkeypatch.setattr(plan_compiler, "_Template", template)
    return counts


# ---------------------------------------------------------------- diamonds: linear work


def test_a_diamond_of_30_levels_is_checked_once_per_pipeline(count_work: dict[str, int]) -> None:
    text = json.dumps(diamond(30))
    start = time.perf_counter()
    manifest = parse_manifest(text, source="m.json")
    parsed = time.perf_counter()
    with pytest.raises(PlanError) as info:
        compile_all(manifest, registry=registry())
    print(f"\ndiamond of 30 levels ({len(text)} bytes): parse {parsed - start:.3f} s, "
          f"compile_all {time.perf_counter() - parsed:.3f} s")
    # each pipeline's references were read once by each of the two passes (check, count)
    assert count_work["pipelines_read"] == 2 * 31 and count_work["refs_read"] == 2 * 61
    # only the pipelines within the size limit were compiled, each once
    within = [i for i in range(31) if 2 ** (30 - i) <= MAX_PLAN_STEPS]
    assert count_work["compiled"] == len(within)
    too_big = {p.path: p.message for p in info.value.problems}
    assert set(too_big) == {f"pipelines.L{i}" for i in range(31) if i not in within}
    assert too_big["pipelines.L0"] == (
        "expands to 1,073,741,824 stage steps once its nested pipelines are opened, more "
        f"than the limit of {MAX_PLAN_STEPS:,}")


def test_a_diamond_within_the_limit_compiles_each_pipeline_once(
    count_work: dict[str, int],
) -> None:
    manifest = parse_manifest(json.dumps(diamond(12)))
    plans = compile_all(manifest, registry=registry())
    assert count_work["compiled"] == 13
    plan = plans["L0"]
    steps = list(plan.walk())
    assert len(plan.stages) == 2**12 == manifest.stage_steps("L0")
    assert len(steps) == 2**12 + sum(2**k for k in range(1, 13))  # stages + nested pipelines
    assert len({s.path for s in steps}) == len(steps)  # every occurrence has its own path
    assert plan.stages[0].path == "L0" + "".join(f"[0]/L{i}" for i in range(1, 13)) + "[0]"
    assert plan.stages[-1].path == "L0" + "".join(f"[1]/L{i}" for i in range(1, 13)) + "[0]"
    assert plan.stages[0].where == "pipelines.L12.steps[0]"


def test_compiling_one_pipeline_builds_each_included_pipeline_once(
    count_work: dict[str, int],
) -> None:
    plan = compile_plan(parse_manifest(json.dumps(diamond(12))), "L0", registry=registry())
    assert count_work["compiled"] == 13 and len(plan.stages) == 4096


def test_a_pipeline_over_the_size_limit_is_refused_before_it_expands(
    count_work: dict[str, int],
) -> None:
    width = MAX_PLAN_STEPS + 1
    manifest = parse_manifest(json.dumps({"pipelines": {"fan": {"steps": [["s"] * width]}}}))
    with pytest.raises(PlanError) as info:
        compile_plan(manifest, "fan", registry=registry())
    assert info.value.problems == (Problem("pipelines.fan", (
        f"expands to {width:,} stage steps once its nested pipelines are opened, more than "
        f"the limit of {MAX_PLAN_STEPS:,}")),)
    assert count_work["compiled"] == 0


# Random acyclic manifests: the memoised compiler yields exactly the naive expansion.

N_PIPES = 4


def naive_walk(pipes: list[list[Any]], index: int, prefix: str) -> Iterator[tuple[str, str]]:
    """(kind, path) of every step, expanding each include afresh (the old way)."""
    def step(item: Any, path: str) -> Iterator[tuple[str, str]]:
        if isinstance(item, str) and item.startswith("q"):
            yield "PipelineStep", path
            yield from naive_walk(pipes, int(item[1:]), f"{path}/{item}")
        elif isinstance(item, str):
            yield "StageStep", path
        else:
            yield "ParallelGroup", path
            for j, branch in enumerate(item):
                if isinstance(branch, list):
                    for k, sub in enumerate(branch):
                        yield from step(sub, f"{path}[{j}][{k}]")
                else:
                    yield from step(branch, f"{path}[{j}]")

    for i, item in enumerate(pipes[index]):
        yield from step(item, f"{prefix}[{i}]")


@st.composite
def acyclic_pipelines(draw: st.DrawFn) -> list[list[Any]]:
    """Pipeline q<i> may include only q<j> with j > i (so no cycles)."""
    pipes: list[list[Any]] = []
    for i in range(N_PIPES):
        names = st.sampled_from(["s", *(f"q{j}" for j in range(i + 1, N_PIPES))])
        branch = names | st.lists(names, min_size=1, max_size=3)
        item = names | st.lists(branch, min_size=1, max_size=3)
        pipes.append(draw(st.lists(item, min_size=1, max_size=4)))
    return pipes


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pipes=acyclic_pipelines())
def test_memoised_expansion_equals_the_naive_one(pipes: list[list[Any]]) -> None:
    manifest = parse_manifest(json.dumps(
        {"pipelines": {f"q{i}": {"steps": steps} for i, steps in enumerate(pipes)}}))
    plans = compile_all(manifest, registry=registry())
    for i in range(N_PIPES):
        plan = plans[f"q{i}"]
        got = [(type(s).__name__, s.path) for s in plan.walk()]
        assert got == list(naive_walk(pipes, i, f"q{i}"))
        assert len(plan.stages) == manifest.stage_steps(f"q{i}")


# ---------------------------------------------------------------- nesting depth


def test_groups_nested_to_the_limit_are_fine() -> None:
    parse_manifest(nested_groups(MAX_NESTING))


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 500])
def test_groups_nested_past_the_limit_are_refused_at_their_path(depth: int) -> None:
    problems = problems_of(nested_groups(depth))
    if depth == 500:  # deeper than the JSON limit: the parser stops first, with a place
        assert len(problems) == 1 and problems[0].path == ""
        assert problems[0].message.startswith("the JSON nests more than 80 levels deep (at "
                                              "line 1, column ")
        return
    assert problems == (Problem("pipelines.p.steps[0]" + "[0]" * (2 * MAX_NESTING),
                                f"parallel groups nest more than {MAX_NESTING} deep here "
                                "(the limit)"),)


def test_a_chain_of_includes_to_the_limit_is_fine() -> None:
    manifest = parse_manifest(json.dumps(chain(MAX_NESTING)))
    plan = compile_plan(manifest, "c0", registry=registry())
    assert len(plan.stages) == 1


@pytest.mark.parametrize("length", [MAX_NESTING + 1, 2000])
def test_a_long_chain_of_includes_is_refused_once_where_it_gets_too_deep(length: int) -> None:
    first = length - MAX_NESTING - 1  # the innermost pipeline that is too deep
    (problem,) = problems_of(json.dumps(chain(length)))
    assert problem.path == f"pipelines.c{first}.steps[0]"
    assert problem.message.startswith(
        f"nested pipelines and parallel groups nest {MAX_NESTING + 1} levels deep here, more "
        f"than the limit of {MAX_NESTING}: c{first} -> c{first + 1} -> ")
    assert problem.message.endswith(f" -> c{length}")


def test_groups_and_includes_count_together() -> None:
    (problem,) = problems_of(json.dumps(mixed(MAX_NESTING // 2 + 1)))
    assert problem.path == "pipelines.m0.steps[1][0][0]"
    assert "nest 34 levels deep here" in problem.message


def test_a_plan_at_the_limit_is_walked_drawn_and_run_far_from_the_recursion_limit(
    tmp_path: Path,
) -> None:
    """Every recursive walk (compile, walk, outline, drawings, the step loop, hooks that
    checkpoint) handles the deepest plan a manifest may hold with a third of Python's
    default recursion limit."""
    path = tmp_path / "deep.json"
    path.write_text(for_cli(mixed(MAX_NESTING // 2)))
    sdk = QuantSDK(str(path), artifacts=str(tmp_path / "store"))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(330)
    try:
        plan: Plan = sdk.plan("m0")
        assert len(list(plan.walk())) > 0
        assert outline(plan)["children"] and render_mermaid(plan) and render_dot(plan)
        result = sdk.runner("m0", executor="inline").run(None)
    finally:
        sys.setrecursionlimit(limit)
    assert len(result.context.audit_trail) == 2 * (MAX_NESTING // 2) + 1


# ---------------------------------------------------------------- numbers and strings


@pytest.mark.parametrize(("literal", "message"), [
    ("9" * 5000, "the number 999999999999...(5000 characters) has more than 30 digits"),
    ("-" + "9" * 31, "the number -99999999999...(32 characters) has more than 30 digits"),
    ("1e999", "the number 1e999 is out of range"),
    ("NaN", "the number NaN is not a JSON number (NaN and Infinity are not allowed)"),
    ("-Infinity", "the number -Infinity is not a JSON number (NaN and Infinity are not "
                  "allowed)"),
])
def test_numbers_past_any_sane_size_are_refused_at_their_path(literal: str, message: str) -> None:
    text = ('{"pipelines": {"p": {"steps": ["s"], "resources": {"s": {"num_cpus": '
            + literal + "}}}}}")
    assert problems_of(text) == (Problem("pipelines.p.resources.s.num_cpus", message),)


def test_resource_amounts_have_sane_bounds() -> None:
    problems = problems_of(json.dumps({"pipelines": {"p": {"steps": ["s"], "resources": {
        "s": {"max_retries": 101, "num_gpus": 1e7, "memory": "9999999999TiB"}}}}}))
    paths = {p.path for p in problems}
    assert paths == {"pipelines.p.resources.s.max_retries",
                     "pipelines.p.resources.s.num_gpus", "pipelines.p.resources.s.memory"}


def test_overlong_names_are_refused_in_one_short_line() -> None:
    long = "x" * 100_000
    problems = problems_of(json.dumps({"pipelines": {"p": {"steps": [long]}, long: {
        "steps": ["s"]}}}))
    assert Problem("pipelines.p.steps[0]", f"100,000 characters long, more than the limit of "
                                           f"{MAX_NAME_LENGTH}") in problems
    assert all(len(str(p)) < 300 for p in problems)


def test_an_oversized_manifest_is_refused_before_parsing() -> None:
    (problem,) = problems_of(" " * (4 * 1024 * 1024 + 1))
    assert problem.message == ("the manifest is 4,194,305 bytes, more than the limit of "
                               "4,194,304")


def test_too_many_problems_are_counted_not_listed() -> None:
    problems = problems_of(json.dumps({"pipelines": {"p": {"steps": [1] * 500}}}))
    assert len(problems) == 101
    assert problems[-1] == Problem("", "... and 400 more problems")


def test_a_manifest_model_built_in_python_counts_steps_too() -> None:
    manifest = Manifest.model_validate(diamond(3))
    assert manifest.stage_steps("L0") == 8 and manifest.stage_steps("L3") == 1


# ---------------------------------------------------------------- the command line


def cli(*args: Any, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


HOSTILE = {
    "diamond": (for_cli(diamond(30)), "L0", "pipelines.L0: expands to 1,073,741,824"),
    "chain": (for_cli(chain(2000)), "c0", "pipelines.c1967.steps[0]: nested pipelines"),
    "groups": (nested_groups(500), "p", "the JSON nests more than 80 levels deep"),
    "groups33": (nested_groups(MAX_NESTING + 1), "p", "parallel groups nest more than 32"),
    "number": (huge_number(5000), "p", "pipelines.p.resources.s.max_retries: the number"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_the_cli_refuses_hostile_manifests_in_one_clean_error(
    tmp_path: Path, case: str, command: str,
) -> None:
    text, pipeline, expected = HOSTILE[case]
    path = tmp_path / "m.json"
    path.write_text(text)
    args = ["validate", "-m", path] if command == "validate" else [
        "run", pipeline, "-m", path, "--artifacts", tmp_path / "store"]
    start = time.perf_counter()
    proc = cli(*args, cwd=tmp_path)
    print(f"\nrunner {command} {case}: exit {proc.returncode} in "
          f"{time.perf_counter() - start:.2f} s")
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert len(proc.stderr.splitlines()) < 25


@pytest.mark.parametrize("case", ["diamond", "chain"])
def test_submit_dry_run_refuses_hostile_manifests(tmp_path: Path, case: str) -> None:
    text, pipeline, expected = HOSTILE[case]
    path = tmp_path / "m.json"
    path.write_text(text)
    proc = cli("submit", pipeline, "-m", path, "--dry-run", "--image", "runner:test",
               "--artifacts", "s3://bucket/runs", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
