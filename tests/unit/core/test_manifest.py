"""The manifest grammar, its validation messages, and compiling it into a Plan.

Every error test checks the JSON path and the words of the message, and that
no pydantic internals leak into what the user reads.
"""

import json
from collections.abc import Iterator
from typing import Annotated, Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import Field

from runner.context import Context, MergeRule, MetaContext, SelectionContext
from runner.errors import ManifestError, PlanError, Problem, RegistryError
from runner.manifest import Manifest, load_manifest, parse_manifest
from runner.orchestration.plan import (
    AdapterStep,
    Branch,
    ParallelGroup,
    PipelineStep,
    Plan,
    compile_all,
    compile_plan,
)
from runner.registry import StageRegistry, context_adapter, merge_adapter, stage

# ---------------------------------------------------------------- helpers and fixtures

LEAKS = (
    "literal[",
    "function-after",
    "function-plain",
    "function-wrap",
    "errors.pydantic.dev",
    "[key]",
    "constrained-str",
    "json-or-python",
    "union[",
    "should match pattern",
    "type=",
)

RULES = "append, concat_columns, error, last_wins, first_wins"
NAME_HINT = "use letters, digits, '.', '_' and '-'"
STAGE_NAMES = ("load", "clean", "features", "train", "score", "report", "a", "b", "c", "d",
               "b1", "b2", "c1", "d1", "d2")


def passthrough(ctx: Any) -> Any:
    return ctx


def other_passthrough(ctx: Any) -> Any:
    return ctx


def manifest_stage(ctx: Any) -> Any:
    return ctx


def write_x_one(ctx: Any) -> Any:
    return ctx


def write_x_two(ctx: Any) -> Any:
    return ctx


def write_x_three(ctx: Any) -> Any:
    return ctx


def write_both_one(ctx: Any) -> Any:
    return ctx


def write_both_two(ctx: Any) -> Any:
    return ctx


@stage("declared", writes=["run_id"], registry=StageRegistry())
def declared_writer(ctx: Any) -> Any:
    """Carries ``__runner_stage__`` metadata that a manifest import path picks up."""
    return ctx


def to_meta(ctx: SelectionContext) -> MetaContext:
    return MetaContext(run_id=ctx.run_id)


def combine(base: Any, branches: Any) -> Any:
    return base


NOT_CALLABLE = 42


class AppendOnStr(Context):
    """Declares rule 'append' on a field that is not a list."""

    name: Annotated[str, MergeRule("append")] = ""


class ConcatOnList(Context):
    """Declares rule 'concat_columns' on a field that is not a DataFrame."""

    items: Annotated[list[int], MergeRule("concat_columns")] = Field(default_factory=list)


class FrameCtx(Context):
    """A context with a plain (rule 'error') frame and a tagged list."""

    frame: pd.DataFrame = Field(default_factory=pd.DataFrame)
    tags: list[str] = Field(default_factory=list)


def here(attr: str) -> str:
    """An import path to something in this test module, however pytest imported it."""
    return f"{__name__}:{attr}"


def make_registry() -> StageRegistry:
    reg = StageRegistry()
    for name in STAGE_NAMES:
        reg.register(name, passthrough, origin=f"test {name}")
    return reg


@pytest.fixture
def reg(monkeypatch: pytest.MonkeyPatch) -> StageRegistry:
    # no manifest folder searched by an earlier test: an import error's words are fixed
    monkeypatch.setattr("runner.registry._SEARCHED", {})
    return make_registry()


def text_of(obj: Any) -> str:
    return obj if isinstance(obj, str) else json.dumps(obj)


def manifest_problems(obj: Any) -> tuple[Problem, ...]:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text_of(obj), source="m.json")
    assert_clean(info.value.problems)
    assert str(info.value).startswith("invalid manifest m.json:\n")
    for p in info.value.problems:
        assert f"\n  {p}" in str(info.value)
    return info.value.problems


def plan_problems(obj: Any, pipeline: str, registry: StageRegistry) -> tuple[Problem, ...]:
    manifest = parse_manifest(text_of(obj), source="m.json")
    with pytest.raises(PlanError) as info:
        compile_plan(manifest, pipeline, registry=registry)
    assert_clean(info.value.problems)
    assert info.value.source == "m.json"
    assert str(info.value).startswith("invalid pipeline in m.json:\n")
    return info.value.problems


def assert_clean(problems: tuple[Problem, ...]) -> None:
    assert problems, "an error must carry at least one problem"
    for p in problems:
        for leak in LEAKS:
            assert leak not in p.message.lower(), f"pydantic internals leak: {p}"
            assert leak not in p.path.lower(), f"pydantic internals leak: {p}"


def compile_(obj: Any, pipeline: str, registry: StageRegistry) -> Plan:
    return compile_plan(parse_manifest(text_of(obj)), pipeline, registry=registry)


def one_pipeline(steps: Any, **extra: Any) -> dict[str, Any]:
    return {"pipelines": {"p": {"steps": steps, **extra}}}


def shape(plan: Plan) -> list[tuple[str, str, str, str]]:
    """Every step of the plan as (kind, name, plan path, manifest location)."""
    return [(type(s).__name__, s.name, s.path, s.where) for s in plan.walk()]


# ---------------------------------------------------------------- valid grammar -> Plan


def test_parallel_group_of_two_names(reg: StageRegistry) -> None:
    plan = compile_(one_pipeline(["a", ["b", "c"], "d"]), "p", reg)
    assert plan.pipeline == "p"
    assert plan.context_type is Context
    assert plan.has_parallel
    assert shape(plan) == [
        ("StageStep", "a", "p[0]", "pipelines.p.steps[0]"),
        ("ParallelGroup", "parallel[2]", "p[1]", "pipelines.p.steps[1]"),
        ("StageStep", "b", "p[1][0]", "pipelines.p.steps[1][0]"),
        ("StageStep", "c", "p[1][1]", "pipelines.p.steps[1][1]"),
        ("StageStep", "d", "p[2]", "pipelines.p.steps[2]"),
    ]
    group = plan.steps[1]
    assert isinstance(group, ParallelGroup)
    assert group.pipeline == "p"
    assert group.merge_adapter is None
    assert [b.index for b in group.branches] == [0, 1]
    assert [b.path for b in group.branches] == ["p[1][0]", "p[1][1]"]
    assert [b.label for b in group.branches] == ["b", "c"]
    assert group.branches[0].display == "p[1][0] (b)"
    assert all(isinstance(b, Branch) and len(b.steps) == 1 for b in group.branches)
    assert group.rules["feature_store"] == "concat_columns"
    assert group.rules["audit_trail"] == "append"
    assert group.rules["run_id"] == "error"
    assert [s.entry.fn for s in plan.stages] == [passthrough] * 4


def test_sequence_inside_a_branch(reg: StageRegistry) -> None:
    plan = compile_(one_pipeline(["a", [["b1", "b2"], "c"], "d"]), "p", reg)
    assert shape(plan) == [
        ("StageStep", "a", "p[0]", "pipelines.p.steps[0]"),
        ("ParallelGroup", "parallel[2]", "p[1]", "pipelines.p.steps[1]"),
        ("StageStep", "b1", "p[1][0][0]", "pipelines.p.steps[1][0][0]"),
        ("StageStep", "b2", "p[1][0][1]", "pipelines.p.steps[1][0][1]"),
        ("StageStep", "c", "p[1][1]", "pipelines.p.steps[1][1]"),
        ("StageStep", "d", "p[2]", "pipelines.p.steps[2]"),
    ]
    group = plan.steps[1]
    assert isinstance(group, ParallelGroup)
    first, second = group.branches
    assert first.label == "b1 -> b2"
    assert [s.name for s in first.steps] == ["b1", "b2"]
    assert second.label == "c"


def test_deeper_nesting(reg: StageRegistry) -> None:
    steps = ["a", [["b1", ["c1", ["d1", ["d2", "c"]]]], "c"], "d"]
    plan = compile_(one_pipeline(steps), "p", reg)
    loc = "pipelines.p.steps"
    assert shape(plan) == [
        ("StageStep", "a", "p[0]", f"{loc}[0]"),
        ("ParallelGroup", "parallel[2]", "p[1]", f"{loc}[1]"),
        ("StageStep", "b1", "p[1][0][0]", f"{loc}[1][0][0]"),
        ("ParallelGroup", "parallel[2]", "p[1][0][1]", f"{loc}[1][0][1]"),
        ("StageStep", "c1", "p[1][0][1][0]", f"{loc}[1][0][1][0]"),
        ("StageStep", "d1", "p[1][0][1][1][0]", f"{loc}[1][0][1][1][0]"),
        ("ParallelGroup", "parallel[2]", "p[1][0][1][1][1]", f"{loc}[1][0][1][1][1]"),
        ("StageStep", "d2", "p[1][0][1][1][1][0]", f"{loc}[1][0][1][1][1][0]"),
        ("StageStep", "c", "p[1][0][1][1][1][1]", f"{loc}[1][0][1][1][1][1]"),
        ("StageStep", "c", "p[1][1]", f"{loc}[1][1]"),
        ("StageStep", "d", "p[2]", f"{loc}[2]"),
    ]
    outer = plan.steps[1]
    assert isinstance(outer, ParallelGroup)
    assert outer.branches[0].label == "b1 -> parallel[2]"
    inner = outer.branches[0].steps[1]
    assert isinstance(inner, ParallelGroup)
    assert inner.branches[1].label == "d1 -> parallel[2]"


def test_a_single_step_branch_list_is_a_sequence_of_one(reg: StageRegistry) -> None:
    plan = compile_(one_pipeline([["a", ["b"]]]), "p", reg)
    assert shape(plan) == [
        ("ParallelGroup", "parallel[2]", "p[0]", "pipelines.p.steps[0]"),
        ("StageStep", "a", "p[0][0]", "pipelines.p.steps[0][0]"),
        ("StageStep", "b", "p[0][1][0]", "pipelines.p.steps[0][1][0]"),
    ]


def test_nested_pipeline_by_name(reg: StageRegistry) -> None:
    manifest = {"pipelines": {
        "meta": {"steps": ["inner", "a"], "description": "outer"},
        "inner": {"steps": ["b", ["c", "d"]]},
    }}
    plan = compile_(manifest, "meta", reg)
    assert plan.description == "outer"
    assert shape(plan) == [
        ("PipelineStep", "inner", "meta[0]", "pipelines.meta.steps[0]"),
        ("StageStep", "b", "meta[0]/inner[0]", "pipelines.inner.steps[0]"),
        ("ParallelGroup", "parallel[2]", "meta[0]/inner[1]", "pipelines.inner.steps[1]"),
        ("StageStep", "c", "meta[0]/inner[1][0]", "pipelines.inner.steps[1][0]"),
        ("StageStep", "d", "meta[0]/inner[1][1]", "pipelines.inner.steps[1][1]"),
        ("StageStep", "a", "meta[1]", "pipelines.meta.steps[1]"),
    ]
    nested = plan.steps[0]
    assert isinstance(nested, PipelineStep)
    assert nested.pipeline == "inner"
    assert nested.context_type is Context
    group = nested.steps[1]
    assert isinstance(group, ParallelGroup)
    assert group.pipeline == "inner"


def test_nested_pipeline_inside_a_branch(reg: StageRegistry) -> None:
    manifest = {"pipelines": {"p": {"steps": ["a", ["inner", "d"]]},
                              "inner": {"steps": ["b", "c"]}}}
    plan = compile_(manifest, "p", reg)
    assert shape(plan) == [
        ("StageStep", "a", "p[0]", "pipelines.p.steps[0]"),
        ("ParallelGroup", "parallel[2]", "p[1]", "pipelines.p.steps[1]"),
        ("PipelineStep", "inner", "p[1][0]", "pipelines.p.steps[1][0]"),
        ("StageStep", "b", "p[1][0]/inner[0]", "pipelines.inner.steps[0]"),
        ("StageStep", "c", "p[1][0]/inner[1]", "pipelines.inner.steps[1]"),
        ("StageStep", "d", "p[1][1]", "pipelines.p.steps[1][1]"),
    ]
    group = plan.steps[1]
    assert isinstance(group, ParallelGroup)
    assert group.branches[0].label == "inner"


def test_dotted_pipeline_names_are_quoted_in_locations(reg: StageRegistry) -> None:
    plan = compile_({"pipelines": {"alpha.full": {"steps": ["a", ["b", "c"]]}}}, "alpha.full", reg)
    assert shape(plan) == [
        ("StageStep", "a", "alpha.full[0]", 'pipelines."alpha.full".steps[0]'),
        ("ParallelGroup", "parallel[2]", "alpha.full[1]", 'pipelines."alpha.full".steps[1]'),
        ("StageStep", "b", "alpha.full[1][0]", 'pipelines."alpha.full".steps[1][0]'),
        ("StageStep", "c", "alpha.full[1][1]", 'pipelines."alpha.full".steps[1][1]'),
    ]


def test_manifest_keeps_source_and_digest() -> None:
    text = json.dumps(one_pipeline(["a"]))
    m = parse_manifest(text, source="x.json")
    assert m.source == "x.json"
    assert len(m.digest) == 64
    assert m.digest != parse_manifest(json.dumps(one_pipeline(["b"]))).digest
    assert m.digest == parse_manifest(text).digest


def test_plan_carries_manifest_digest(reg: StageRegistry) -> None:
    m = parse_manifest(json.dumps(one_pipeline(["a"])))
    assert compile_plan(m, "p", registry=reg).manifest_digest == m.digest


def test_compile_all_compiles_every_pipeline(reg: StageRegistry) -> None:
    m = parse_manifest(json.dumps({"pipelines": {"p": {"steps": ["a", "q"]},
                                                 "q": {"steps": ["b"]}}}))
    plans = compile_all(m, registry=reg)
    assert sorted(plans) == ["p", "q"]
    assert [s.name for s in plans["p"].stages] == ["a", "b"]
    assert [s.name for s in plans["q"].stages] == ["b"]


def test_compile_all_reports_every_pipeline_at_once(reg: StageRegistry) -> None:
    m = parse_manifest(json.dumps({"pipelines": {"p": {"steps": ["zzz1"]},
                                                 "q": {"steps": ["zzz2"]}}}), source="m.json")
    with pytest.raises(PlanError) as info:
        compile_all(m, registry=reg)
    assert info.value.problems == (
        Problem("pipelines.p.steps[0]", "unknown stage or pipeline 'zzz1'"),
        Problem("pipelines.q.steps[0]", "unknown stage or pipeline 'zzz2'"),
    )


def test_compile_unknown_pipeline_suggests(reg: StageRegistry) -> None:
    m = parse_manifest(json.dumps({"pipelines": {"alpha.full": {"steps": ["a"]}}}))
    with pytest.raises(PlanError) as info:
        compile_plan(m, "alpha.ful", registry=reg)
    assert info.value.problems == (
        Problem("pipelines", "no pipeline named 'alpha.ful' (did you mean 'alpha.full'?)"),
    )


def test_load_manifest_reads_a_file(tmp_path: Any) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(one_pipeline(["a"])), encoding="utf-8")
    m = load_manifest(path)
    assert isinstance(m, Manifest)
    assert m.source == str(path)
    assert m.pipelines["p"].steps == ["a"]


def test_load_manifest_errors_name_the_file(tmp_path: Any) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{"pipelines": {"p": {"steps": []}}}', encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert info.value.source == str(path)
    assert str(info.value) == (
        f"invalid manifest {path}:\n  pipelines.p.steps: steps must not be empty"
    )
    with pytest.raises(ManifestError) as missing:
        load_manifest(tmp_path / "nope.json")
    hint = ("file not found (run from the project folder, or pass --manifest PATH or set "
            "RUNNER_MANIFEST)")
    assert missing.value.problems == (Problem("", hint),)


# ---------------------------------------------------------------- manifest errors


def test_malformed_json_gives_line_and_column() -> None:
    text = '{\n  "pipelines": {\n    "p": {"steps": ["a",]}\n  }\n}'
    assert manifest_problems(text) == (
        Problem("", "malformed JSON at line 3, column 25: Expecting value"),
    )


def test_malformed_json_missing_delimiter() -> None:
    text = '{\n "pipelines": {\n  "p": {"steps": ["a"]\n }'
    assert manifest_problems(text) == (
        Problem("", "malformed JSON at line 4, column 3: Expecting ',' delimiter"),
    )


@pytest.mark.parametrize("text", ["[]", "3", '"pipelines"', "null"])
def test_manifest_must_be_an_object(text: str) -> None:
    assert manifest_problems(text) == (Problem("", "the manifest must be a JSON object"),)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"pipelines": {"p": {"steps": ["a"]}}, "pipelines": {"p": {"steps": ["a"]}}}',
         "pipelines"),
        ('{"pipelines": {"alpha.full": {"steps": ["a"]}, "alpha.full": {"steps": ["b"]}}}',
         'pipelines."alpha.full"'),
        ('{"pipelines": {"alpha.full": {"steps": ["a"], "steps": ["b"]}}}',
         'pipelines."alpha.full".steps'),
        ('{"pipelines": {"p": {"steps": ["a"], "merge": {"x": "append", "x": "error"}}}}',
         "pipelines.p.merge.x"),
        ('{"pipelines": {"p": {"steps": ["a"]}}, "adapters": ['
         '{"from": "m:A", "to": "m:B", "fn": "m:f"},'
         '{"from": "m:A", "to": "m:B", "fn": "m:f", "fn": "m:g"}]}',
         "adapters[1].fn"),
        ('{"pipelines": {"p": {"steps": ["a"]}}, "$schema": "x", "$schema": "y"}',
         '"$schema"'),
        ('{"pipelines": {"p": {"steps": ["a"]}}, "stages": {"s.x": "m:f", "s.x": "m:g"}}',
         'stages."s.x"'),
    ],
)
def test_duplicate_keys_at_any_depth(text: str, path: str) -> None:
    assert manifest_problems(text) == (Problem(path, "key given more than once"),)


def test_duplicate_key_is_reported_with_other_problems() -> None:
    text = '{"pipelines": {"p": {"steps": [], "steps": []}}}'
    assert manifest_problems(text) == (
        Problem("pipelines.p.steps", "key given more than once"),
        Problem("pipelines.p.steps", "steps must not be empty"),
    )


@pytest.mark.parametrize(
    ("manifest", "problems"),
    [
        ({"pipelines": {"p": {"step": ["a"]}}}, [
            ("pipelines.p.steps", "required key is missing"),
            ("pipelines.p.step", "unknown key (did you mean 'steps'?)"),
        ]),
        (one_pipeline(["a"], mrege={}), [
            ("pipelines.p.mrege", "unknown key (did you mean 'merge'?)"),
        ]),
        (one_pipeline(["a"], merge_adaptor="x"), [
            ("pipelines.p.merge_adaptor", "unknown key (did you mean 'merge_adapter'?)"),
        ]),
        (one_pipeline(["a"], contxt="m:C"), [
            ("pipelines.p.contxt", "unknown key (did you mean 'context'?)"),
        ]),
        ({**one_pipeline(["a"]), "stage": {}}, [
            ("stage", "unknown key (did you mean 'stages'?)"),
        ]),
        ({**one_pipeline(["a"]), "adapter": []}, [
            ("adapter", "unknown key (did you mean 'adapters'?)"),
        ]),
        ({**one_pipeline(["a"]),
          "adapters": [{"from": "m:A", "to": "m:B", "fn": "m:f", "fun": 1}]}, [
            ("adapters[0].fun", "unknown key (did you mean 'fn'?)"),
        ]),
        (one_pipeline(["a"], zzzzzz=1), [
            ("pipelines.p.zzzzzz", "unknown key"),
        ]),
        ({"pipeline": {"p": {"steps": ["a"]}}}, [
            ("pipelines", "required key is missing"),
            ("pipeline", "unknown key (did you mean 'pipelines'?)"),
        ]),
    ],
)
def test_unknown_keys_suggest_the_closest(manifest: Any, problems: list[tuple[str, str]]) -> None:
    assert manifest_problems(manifest) == tuple(Problem(p, m) for p, m in problems)


@pytest.mark.parametrize(
    ("steps", "path", "message"),
    [
        (["a", 3], "pipelines.p.steps[1]",
         "expected a stage or pipeline name (string) or a parallel group (list), got 3"),
        (["a", [3]], "pipelines.p.steps[1][0]",
         "expected a stage or pipeline name (string) or a branch (list of steps), got 3"),
        (["a", [[3]]], "pipelines.p.steps[1][0][0]",
         "expected a stage or pipeline name (string) or a parallel group (list), got 3"),
        (["a", ["b", [["c", 2.5]]]], "pipelines.p.steps[1][1][0][1]",
         "expected a stage or pipeline name (string) or a branch (list of steps), got 2.5"),
        ([None], "pipelines.p.steps[0]",
         "expected a stage or pipeline name (string) or a parallel group (list), got null"),
        ([True], "pipelines.p.steps[0]",
         "expected a stage or pipeline name (string) or a parallel group (list), got true"),
        ([{"x": 1}], "pipelines.p.steps[0]",
         'expected a stage or pipeline name (string) or a parallel group (list), got {"x": 1}'),
        ([["a", {"x": 1}]], "pipelines.p.steps[0][1]",
         'expected a stage or pipeline name (string) or a branch (list of steps), got {"x": 1}'),
    ],
)
def test_wrong_types_in_steps(steps: Any, path: str, message: str) -> None:
    assert manifest_problems(one_pipeline(steps)) == (Problem(path, message),)


def test_object_as_steps() -> None:
    (problem,) = manifest_problems(one_pipeline({"a": 1}))
    assert problem.path == "pipelines.p.steps"
    assert problem.message.endswith('got {"a": 1}')


@pytest.mark.parametrize("steps", ["a", {"a": 1}])
def test_steps_that_are_not_a_list_say_so(steps: Any) -> None:
    (problem,) = manifest_problems(one_pipeline(steps))
    assert problem.path == "pipelines.p.steps"
    assert "invalid step name" not in problem.message
    assert "stage or pipeline name" not in problem.message
    assert "list" in problem.message


def test_several_type_errors_are_all_reported() -> None:
    problems = manifest_problems(one_pipeline([["a", ["b", 3, "c b"]]]))
    assert problems == (
        Problem("pipelines.p.steps[0][1][1]",
                "expected a stage or pipeline name (string) or a parallel group (list), got 3"),
        Problem("pipelines.p.steps[0][1][2]", f'invalid step name "c b": {NAME_HINT}'),
    )


@pytest.mark.parametrize(
    ("manifest", "path", "message"),
    [
        (one_pipeline([]), "pipelines.p.steps", "steps must not be empty"),
        (one_pipeline(["a", []]), "pipelines.p.steps[1]", "a parallel group must not be empty"),
        (one_pipeline(["a", ["b", []]]), "pipelines.p.steps[1][1]",
         "a branch must not be empty"),
        (one_pipeline(["a", ["b", [[]]]]), "pipelines.p.steps[1][1][0]",
         "a parallel group must not be empty"),
        (one_pipeline([["b", [["c", []]]]]), "pipelines.p.steps[0][1][0][1]",
         "a branch must not be empty"),
        ({"pipelines": {}}, "pipelines", "must not be empty"),
        ({}, "pipelines", "required key is missing"),
        ({"pipelines": {"p": {}}}, "pipelines.p.steps", "required key is missing"),
    ],
)
def test_empty_steps_groups_and_branches(manifest: Any, path: str, message: str) -> None:
    assert manifest_problems(manifest) == (Problem(path, message),)


@pytest.mark.parametrize(
    ("manifest", "path", "message"),
    [
        (one_pipeline(["a b"]), "pipelines.p.steps[0]", f'invalid step name "a b": {NAME_HINT}'),
        (one_pipeline(["a", ["ok", "no/slash"]]), "pipelines.p.steps[1][1]",
         f'invalid step name "no/slash": {NAME_HINT}'),
        (one_pipeline([""]), "pipelines.p.steps[0]", "a step name must not be empty"),
        (one_pipeline(["a"], merge_adapter="x y"), "pipelines.p.merge_adapter",
         f'invalid name "x y": {NAME_HINT}'),
    ],
)
def test_invalid_names(manifest: Any, path: str, message: str) -> None:
    assert manifest_problems(manifest) == (Problem(path, message),)


@pytest.mark.parametrize(
    ("manifest", "path"),
    [
        ({"pipelines": {"p q": {"steps": ["a"]}}}, 'pipelines."p q"'),
        ({**one_pipeline(["a"]), "stages": {"a b": "m:f"}}, 'stages."a b"'),
    ],
)
def test_invalid_names_as_keys(manifest: Any, path: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(json.dumps(manifest))
    bad = path.split(".", 1)[1]
    assert info.value.problems == (Problem(path, f"invalid name {bad}: {NAME_HINT}"),)


@pytest.mark.parametrize("rule", ["apend", "mod:", "Error", "last-wins", ":f"])
def test_bad_merge_rule_names(rule: str) -> None:
    from runner.manifest import BUILTIN_RULES
    from runner.words import did_you_mean

    hint = did_you_mean(rule, BUILTIN_RULES, ignore_case=True)
    assert bool(hint) == (rule in ("apend", "Error", "last-wins"))  # the near misses
    assert manifest_problems(one_pipeline(["a"], merge={"x": rule})) == (
        Problem("pipelines.p.merge.x", f"unknown merge rule {json.dumps(rule)}: use one of "
                f"{RULES} or 'module:callable'{hint}"),
    )


def test_merge_rule_of_the_wrong_type() -> None:
    (problem,) = manifest_problems(one_pipeline(["a"], merge={"x": 3}))
    assert problem == Problem(
        "pipelines.p.merge.x", f"unknown merge rule 3: use one of {RULES} or 'module:callable'"
    )


def test_merge_that_is_not_an_object() -> None:
    (problem,) = manifest_problems(one_pipeline(["a"], merge="append"))
    assert problem.path == "pipelines.p.merge"
    assert "unknown merge rule" not in problem.message


@pytest.mark.parametrize(
    ("manifest", "path", "value"),
    [
        (one_pipeline(["a"], context="nocolon"), "pipelines.p.context", "nocolon"),
        (one_pipeline(["a"], context="1mod:X"), "pipelines.p.context", "1mod:X"),
        ({**one_pipeline(["a"]), "stages": {"s": "bad path"}}, "stages.s", "bad path"),
        ({**one_pipeline(["a"]), "stages": {"s": "mod:"}}, "stages.s", "mod:"),
        ({**one_pipeline(["a"]), "adapters": [{"from": "x", "to": "m:B", "fn": "m:f"}]},
         "adapters[0].from", "x"),
        ({**one_pipeline(["a"]), "adapters": [{"from": "m:A", "to": "m-b:B", "fn": "m:f"}]},
         "adapters[0].to", "m-b:B"),
        ({**one_pipeline(["a"]), "adapters": [{"from": "m:A", "to": "m:B", "fn": "m:f()"}]},
         "adapters[0].fn", "m:f()"),
    ],
)
def test_bad_import_paths(manifest: Any, path: str, value: str) -> None:
    assert manifest_problems(manifest) == (
        Problem(path, f"expected an import path 'module:attribute', got {json.dumps(value)}"),
    )


@pytest.mark.parametrize("key", ["source", "digest"])
def test_internal_fields_are_not_manifest_keys(key: str) -> None:
    assert manifest_problems({**one_pipeline(["a"]), key: "x"}) == (
        Problem(key, "unknown key"),
    )


def test_adapter_missing_keys() -> None:
    manifest = {**one_pipeline(["a"]), "adapters": [{"from": "m:A"}]}
    assert manifest_problems(manifest) == (
        Problem("adapters[0].to", "required key is missing"),
        Problem("adapters[0].fn", "required key is missing"),
    )


def test_pipeline_includes_itself_directly() -> None:
    assert manifest_problems({"pipelines": {"a": {"steps": ["x", "a"]}}}) == (
        Problem("pipelines.a.steps[1]", "pipeline includes itself: a -> a"),
    )


def test_pipeline_includes_itself_through_a_chain() -> None:
    manifest = {"pipelines": {
        "a": {"steps": ["b"]},
        "b": {"steps": ["c", ["x", "a"]]},
        "c": {"steps": ["s"]},
    }}
    assert manifest_problems(manifest) == (
        Problem("pipelines.a.steps[0]", "pipeline includes itself: a -> b -> a"),
    )


def test_pipeline_cycle_of_three_is_reported_once() -> None:
    manifest = {"pipelines": {
        "alpha.full": {"steps": ["x", "beta"]},
        "beta": {"steps": [["gamma", "y"]]},
        "gamma": {"steps": ["alpha.full"]},
    }}
    assert manifest_problems(manifest) == (
        Problem('pipelines."alpha.full".steps[1]',
                "pipeline includes itself: alpha.full -> beta -> gamma -> alpha.full"),
    )


def test_cycle_is_located_inside_the_cycle() -> None:
    manifest = {"pipelines": {
        "p": {"steps": ["a"]},
        "a": {"steps": ["b"]},
        "b": {"steps": [["a", "x"]]},
    }}
    (problem,) = manifest_problems(manifest)
    assert problem.message == "pipeline includes itself: a -> b -> a"
    assert problem.path in {"pipelines.a.steps[0]", "pipelines.b.steps[0][0]"}


def test_very_deep_nesting_is_a_manifest_error() -> None:
    depth = 5000
    text = '{"pipelines": {"p": {"steps": ' + "[" * depth + '"a"' + "]" * depth + "}}}"
    with pytest.raises(ManifestError):
        parse_manifest(text)


def test_every_problem_is_reported_in_one_error() -> None:
    manifest = {"pipelines": {"p": {"steps": [], "mrege": {}},
                              "q": {"steps": ["a", 3], "merge": {"x": "apend"}}},
                "stage": {}}
    assert manifest_problems(manifest) == (
        Problem("pipelines.p.steps", "steps must not be empty"),
        Problem("pipelines.p.mrege", "unknown key (did you mean 'merge'?)"),
        Problem("pipelines.q.steps[1]",
                "expected a stage or pipeline name (string) or a parallel group (list), got 3"),
        Problem("pipelines.q.merge.x",
                f'unknown merge rule "apend": use one of {RULES} or \'module:callable\''
                " (did you mean 'append'?)"),
        Problem("stage", "unknown key (did you mean 'stages'?)"),
    )


# ---------------------------------------------------------------- plan errors


def test_unknown_stage_suggests_closest_names(reg: StageRegistry) -> None:
    manifest = {"pipelines": {"p": {"steps": ["lod", ["clen", "zzz"]]},
                              "features.v2": {"steps": ["a"]}}}
    assert plan_problems(manifest, "p", reg) == (
        Problem("pipelines.p.steps[0]", "unknown stage or pipeline 'lod' (did you mean 'load'?)"),
        Problem("pipelines.p.steps[1][0]",
                "unknown stage or pipeline 'clen' (did you mean 'clean'?)"),
        Problem("pipelines.p.steps[1][1]", "unknown stage or pipeline 'zzz'"),
    )


def test_unknown_name_suggests_pipelines_too(reg: StageRegistry) -> None:
    manifest = {"pipelines": {"p": {"steps": ["alpha.ful"]}, "alpha.full": {"steps": ["a"]}}}
    assert plan_problems(manifest, "p", reg) == (
        Problem("pipelines.p.steps[0]",
                "unknown stage or pipeline 'alpha.ful' (did you mean 'alpha.full'?)"),
    )


def test_unknown_name_inside_a_nested_pipeline(reg: StageRegistry) -> None:
    manifest = {"pipelines": {"p": {"steps": ["a", "inner"]},
                              "inner": {"steps": [["b", "trian"]]}}}
    assert plan_problems(manifest, "p", reg) == (
        Problem("pipelines.inner.steps[0][1]",
                "unknown stage or pipeline 'trian' (did you mean 'train'?)"),
    )


def test_name_that_is_both_stage_and_pipeline(reg: StageRegistry) -> None:
    manifest = {"pipelines": {"p": {"steps": ["b", "a"]}, "a": {"steps": ["b"]}}}
    assert plan_problems(manifest, "p", reg) == (
        Problem("pipelines.p.steps[1]", "'a' names both a pipeline and a stage (test a)"),
    )


def test_unknown_merge_adapter_suggests(reg: StageRegistry) -> None:
    merge_adapter("combine_all", registry=reg)(combine)
    manifest = one_pipeline([["a", "b"]], merge_adapter="combine_al")
    assert plan_problems(manifest, "p", reg) == (
        Problem("pipelines.p.merge_adapter",
                "unknown merge adapter 'combine_al' (did you mean 'combine_all'?)"),
    )


def test_unknown_merge_adapter_without_parallel_group(reg: StageRegistry) -> None:
    assert plan_problems(one_pipeline(["a"], merge_adapter="nothing"), "p", reg) == (
        Problem("pipelines.p.merge_adapter", "unknown merge adapter 'nothing'"),
    )


def test_plain_stage_as_merge_adapter(reg: StageRegistry) -> None:
    assert plan_problems(one_pipeline([["a", "b"]], merge_adapter="c"), "p", reg) == (
        Problem("pipelines.p.merge_adapter",
                "'c' is a stage; register the adapter with @merge_adapter "
                "(it receives the pre-fork context and the branches)"),
    )


def test_merge_adapter_used_as_a_step(reg: StageRegistry) -> None:
    merge_adapter("combine_all", registry=reg)(combine)
    assert plan_problems(one_pipeline(["a", "combine_all"]), "p", reg) == (
        Problem("pipelines.p.steps[1]",
                "'combine_all' is a merge adapter, not a stage: name it in \"merge_adapter\""),
    )


def test_merge_adapter_is_attached_to_groups(reg: StageRegistry) -> None:
    merge_adapter("combine_all", registry=reg)(combine)
    plan = compile_(one_pipeline(["a", ["b", "c"]], merge_adapter="combine_all"), "p", reg)
    group = plan.steps[1]
    assert isinstance(group, ParallelGroup)
    assert group.merge_adapter is not None
    assert group.merge_adapter.fn is combine
    assert group.merge_adapter.kind == "merge_adapter"


NESTED_META = {"pipelines": {
    "sel": {"steps": ["a", "meta"], "context": "runner.context:SelectionContext"},
    "meta": {"steps": ["b"], "context": "runner.context:MetaContext"},
}}


def test_nested_pipeline_of_another_context_type_needs_an_adapter(reg: StageRegistry) -> None:
    assert plan_problems(NESTED_META, "sel", reg) == (
        Problem("pipelines.sel.steps[1]",
                "pipeline 'meta' takes a MetaContext but receives a SelectionContext: "
                "register a context adapter SelectionContext -> MetaContext"),
    )


def test_context_adapter_in_registry_inserts_adapter_step(reg: StageRegistry) -> None:
    context_adapter(SelectionContext, MetaContext, registry=reg)(to_meta)
    plan = compile_(NESTED_META, "sel", reg)
    assert plan.context_type is SelectionContext
    assert shape(plan) == [
        ("StageStep", "a", "sel[0]", "pipelines.sel.steps[0]"),
        ("AdapterStep", "adapt:SelectionContext->MetaContext", "sel[1]:adapter",
         "pipelines.sel.steps[1]"),
        ("PipelineStep", "meta", "sel[1]", "pipelines.sel.steps[1]"),
        ("StageStep", "b", "sel[1]/meta[0]", "pipelines.meta.steps[0]"),
    ]
    adapter = plan.steps[1]
    assert isinstance(adapter, AdapterStep)
    assert adapter.adapter.fn is to_meta
    assert adapter.adapter.source is SelectionContext
    assert adapter.adapter.target is MetaContext
    nested = plan.steps[2]
    assert isinstance(nested, PipelineStep)
    assert nested.context_type is MetaContext


def test_context_adapter_in_manifest_inserts_adapter_step(reg: StageRegistry) -> None:
    manifest = {**NESTED_META, "adapters": [{
        "from": "runner.context:SelectionContext", "to": "runner.context:MetaContext",
        "fn": here("to_meta"),
    }]}
    plan = compile_(manifest, "sel", reg)
    adapter = plan.steps[1]
    assert isinstance(adapter, AdapterStep)
    assert adapter.adapter.fn is to_meta
    assert adapter.adapter.origin == "manifest adapters[0]"
    assert adapter.path == "sel[1]:adapter"
    # the manifest's adapter lives in a child registry: the caller's is untouched
    assert reg.find_adapter(SelectionContext, MetaContext) is None


def test_adapter_for_a_base_class_applies_to_subclasses(reg: StageRegistry) -> None:
    context_adapter(Context, MetaContext, registry=reg)(to_meta)
    plan = compile_(NESTED_META, "sel", reg)
    adapter = plan.steps[1]
    assert isinstance(adapter, AdapterStep)
    assert adapter.name == "adapt:Context->MetaContext"


def test_manifest_adapter_import_error(reg: StageRegistry) -> None:
    manifest = {**NESTED_META, "adapters": [{
        "from": "runner.context:SelectionContext", "to": "runner.context:MetaContxt",
        "fn": here("to_meta"),
    }]}
    assert plan_problems(manifest, "sel", reg) == (
        Problem("adapters[0]", "module 'runner.context' has no attribute 'MetaContxt'"),
        Problem("pipelines.sel.steps[1]",
                "pipeline 'meta' takes a MetaContext but receives a SelectionContext: "
                "register a context adapter SelectionContext -> MetaContext"),
    )


def test_same_context_type_needs_no_adapter(reg: StageRegistry) -> None:
    manifest = {"pipelines": {
        "sel": {"steps": ["a", "inner"], "context": "runner.context:SelectionContext"},
        "inner": {"steps": ["b"]},
    }}
    plan = compile_(manifest, "sel", reg)
    assert not any(isinstance(s, AdapterStep) for s in plan.walk())
    nested = plan.steps[1]
    assert isinstance(nested, PipelineStep)
    assert nested.context_type is SelectionContext


def test_branch_changing_context_type_needs_merge_adapter(reg: StageRegistry) -> None:
    context_adapter(Context, SelectionContext, registry=reg)(to_meta)
    manifest = {"pipelines": {
        "p": {"steps": [["a", "sel"]]},
        "sel": {"steps": ["b"], "context": "runner.context:SelectionContext"},
    }}
    assert plan_problems(manifest, "p", reg) == (
        Problem("pipelines.p.steps[0][1]",
                "branch ends with a SelectionContext but the group forked a Context: "
                "declare a merge_adapter for pipeline 'p'"),
    )
    merge_adapter("combine_all", registry=reg)(combine)
    manifest["pipelines"]["p"]["merge_adapter"] = "combine_all"
    plan = compile_(manifest, "p", reg)
    assert isinstance(plan.steps[0], ParallelGroup)


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ("json:dumps", "json:dumps is not a Context type"),
        ("nomod_zz_runner_test:X",
         "cannot import module 'nomod_zz_runner_test' for 'nomod_zz_runner_test:X': "
         "No module named 'nomod_zz_runner_test'; searched the installed packages"),
        ("runner.context:Nope", "module 'runner.context' has no attribute 'Nope'"),
    ],
)
def test_bad_context_type(reg: StageRegistry, context: str, message: str) -> None:
    assert plan_problems(one_pipeline(["a"], context=context), "p", reg) == (
        Problem("pipelines.p.context", message),
    )


def test_merge_override_of_a_missing_field(reg: StageRegistry) -> None:
    manifest = one_pipeline([["a", "b"]], merge={"run_ib": "last_wins", "zzz": "error"})
    assert plan_problems(manifest, "p", reg) == (
        Problem("pipelines.p.merge.run_ib",
                "Context has no field 'run_ib' (did you mean 'run_id'?)"),
        Problem("pipelines.p.merge.zzz", "Context has no field 'zzz'"),
    )


def test_merge_override_checked_against_the_pipeline_context(reg: StageRegistry) -> None:
    manifest = one_pipeline([["a", "b"]], context="runner.context:SelectionContext",
                            merge={"univers": "append"})
    assert plan_problems(manifest, "p", reg) == (
        Problem("pipelines.p.merge.univers",
                "SelectionContext has no field 'univers' (did you mean 'universe'?)"),
    )
    manifest["pipelines"]["p"]["merge"] = {"universe": "append"}
    plan = compile_(manifest, "p", reg)
    group = plan.steps[0]
    assert isinstance(group, ParallelGroup)
    assert group.rules["universe"] == "append"


def test_merge_override_of_a_missing_field_without_group(reg: StageRegistry) -> None:
    manifest = one_pipeline(["a"], merge={"run_ib": "last_wins"})
    assert plan_problems(manifest, "p", reg) == (
        Problem("pipelines.p.merge.run_ib",
                "Context has no field 'run_ib' (did you mean 'run_id'?)"),
    )


@pytest.mark.parametrize(
    ("field", "rule", "message"),
    [
        ("run_id", "append", "field 'run_id' is not a list, so rule 'append' cannot merge it"),
        ("feature_store", "append",
         "field 'feature_store' is not a list, so rule 'append' cannot merge it"),
        ("audit_trail", "concat_columns",
         "field 'audit_trail' is not a DataFrame, so rule 'concat_columns' cannot merge it"),
        ("workspace", "concat_columns",
         "field 'workspace' is not a DataFrame, so rule 'concat_columns' cannot merge it"),
    ],
)
def test_rule_that_cannot_merge_the_field(
    reg: StageRegistry, field: str, rule: str, message: str
) -> None:
    manifest = one_pipeline(["a", ["b", "c"]], merge={field: rule})
    assert plan_problems(manifest, "p", reg) == (Problem(f"pipelines.p.merge.{field}", message),)


@pytest.mark.parametrize(
    ("ctype", "message"),
    [
        ("AppendOnStr", "field 'name' is not a list, so rule 'append' cannot merge it"),
        ("ConcatOnList",
         "field 'items' is not a DataFrame, so rule 'concat_columns' cannot merge it"),
    ],
)
def test_rule_declared_on_the_type_that_cannot_merge(
    reg: StageRegistry, ctype: str, message: str
) -> None:
    manifest = one_pipeline([["a", "b"]], context=here(ctype))
    assert plan_problems(manifest, "p", reg) == (Problem("pipelines.p", message),)


def test_merge_rule_import_path(reg: StageRegistry) -> None:
    manifest = one_pipeline([["a", "b"]], merge={"run_id": here("combine")})
    plan = compile_(manifest, "p", reg)
    group = plan.steps[0]
    assert isinstance(group, ParallelGroup)
    assert group.rules["run_id"] is combine


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("nomod_zz_runner_test:f",
         "cannot import module 'nomod_zz_runner_test' for 'nomod_zz_runner_test:f': "
         "No module named 'nomod_zz_runner_test'; searched the installed packages"),
        ("json:nope", "module 'json' has no attribute 'nope'"),
    ],
)
def test_merge_rule_import_errors(reg: StageRegistry, rule: str, message: str) -> None:
    manifest = one_pipeline([["a", "b"]], merge={"run_id": rule})
    assert plan_problems(manifest, "p", reg) == (Problem("pipelines.p.merge.run_id", message),)


# ---------------------------------------------------------------- static collision check


@pytest.fixture
def writers(reg: StageRegistry) -> StageRegistry:
    stage("w1", writes=["run_id", "audit_trail"], registry=reg)(write_x_one)
    stage("w2", writes=["run_id"], registry=reg)(write_x_two)
    stage("w3", writes=["run_id"], registry=reg)(write_x_three)
    return reg


def collision_message(pipeline: str, a: str, b: str, field: str, merge_at: str) -> str:
    return (f"branches {a} and {b} both write {field!r}, which has merge rule 'error': "
            f"give it a rule in {merge_at} or a merge_adapter")


def test_branches_writing_one_error_field_fail_compilation(writers: StageRegistry) -> None:
    assert plan_problems(one_pipeline(["a", ["w1", "w2"]]), "p", writers) == (
        Problem("pipelines.p.steps[1]",
                collision_message("p", "p[1][0] (w1)", "p[1][1] (w2)", "run_id",
                                  "pipelines.p.merge")),
    )


def test_collision_check_names_every_pair(writers: StageRegistry) -> None:
    manifest = {"pipelines": {"alpha.full": {"steps": [["w1", ["a", "w2"], "w3"]]}}}
    at = 'pipelines."alpha.full".merge'
    assert plan_problems(manifest, "alpha.full", writers) == tuple(
        Problem('pipelines."alpha.full".steps[0]', collision_message("alpha.full", x, y,
                                                                     "run_id", at))
        for x, y in [
            ("alpha.full[0][0] (w1)", "alpha.full[0][1] (a -> w2)"),
            ("alpha.full[0][0] (w1)", "alpha.full[0][2] (w3)"),
            ("alpha.full[0][1] (a -> w2)", "alpha.full[0][2] (w3)"),
        ]
    )


def test_collision_through_a_nested_pipeline(writers: StageRegistry) -> None:
    manifest = {"pipelines": {"p": {"steps": [["inner", "w2"]]},
                              "inner": {"steps": ["a", "w1"]}}}
    assert plan_problems(manifest, "p", writers) == (
        Problem("pipelines.p.steps[0]",
                collision_message("p", "p[0][0] (inner)", "p[0][1] (w2)", "run_id",
                                  "pipelines.p.merge")),
    )


def test_collision_check_respects_merge_override(writers: StageRegistry) -> None:
    plan = compile_(one_pipeline([["w1", "w2"]], merge={"run_id": "last_wins"}), "p", writers)
    group = plan.steps[0]
    assert isinstance(group, ParallelGroup)
    assert group.rules["run_id"] == "last_wins"


def test_collision_check_respects_merge_adapter(writers: StageRegistry) -> None:
    merge_adapter("combine_all", registry=writers)(combine)
    plan = compile_(one_pipeline([["w1", "w2"]], merge_adapter="combine_all"), "p", writers)
    assert isinstance(plan.steps[0], ParallelGroup)


def test_fields_with_a_merging_rule_never_collide_statically(reg: StageRegistry) -> None:
    stage("t1", writes=["audit_trail", "feature_store"], registry=reg)(write_both_one)
    stage("t2", writes=["audit_trail", "feature_store"], registry=reg)(write_both_two)
    plan = compile_(one_pipeline([["t1", "t2"]]), "p", reg)
    assert [s.name for s in plan.stages] == ["t1", "t2"]


def test_undeclared_writes_are_not_checked(reg: StageRegistry) -> None:
    plan = compile_(one_pipeline([["a", "b"]]), "p", reg)
    assert all(s.entry.writes is None for s in plan.stages)


# ---------------------------------------------------------------- registry


def test_registering_one_name_twice_with_different_functions() -> None:
    registry = StageRegistry()
    registry.register("x", passthrough)
    with pytest.raises(RegistryError) as info:
        registry.register("x", other_passthrough)
    mod = passthrough.__module__
    assert str(info.value) == (
        f"stage 'x' registered twice: by {mod}:passthrough and by {mod}:other_passthrough"
    )
    assert registry.get("x") is not None
    assert registry.get("x").fn is passthrough  # type: ignore[union-attr]


def test_registering_the_same_function_twice_is_fine() -> None:
    registry = StageRegistry()
    first = registry.register("x", passthrough)
    assert registry.register("x", passthrough) is first
    decorated = stage("y", registry=registry)(passthrough)
    assert stage("y", registry=registry)(decorated) is passthrough
    assert registry.names() == ["x", "y"]


def test_the_decorator_refuses_a_second_function() -> None:
    registry = StageRegistry()
    stage("x", registry=registry)(passthrough)
    with pytest.raises(RegistryError, match=r"^stage 'x' registered twice: "):
        stage("x", registry=registry)(other_passthrough)


def test_two_different_functions_with_one_qualname_collide() -> None:
    def factory(k: int) -> Any:
        def execute(ctx: Any) -> Any:
            return k
        return execute

    registry = StageRegistry()
    registry.register("x", factory(1))
    with pytest.raises(RegistryError):
        registry.register("x", factory(2))


def test_registering_something_not_callable() -> None:
    with pytest.raises(RegistryError) as info:
        StageRegistry().register("x", 42)  # type: ignore[arg-type]
    assert str(info.value) == "stage 'x': 42 is not callable"


def test_manifest_stage_by_import_path(reg: StageRegistry) -> None:
    manifest = {**one_pipeline(["a", "mine"]), "stages": {"mine": here("manifest_stage")}}
    plan = compile_(manifest, "p", reg)
    mine = plan.stages[1]
    assert mine.entry.fn is manifest_stage
    assert mine.entry.origin == "manifest stages.mine"
    assert reg.get("mine") is None  # the caller's registry is not changed


def test_manifest_stage_keeps_declared_writes(reg: StageRegistry) -> None:
    manifest = {**one_pipeline([["w.one", "w.two"]]),
                "stages": {"w.one": here("declared_writer"), "w.two": here("declared_writer")}}
    assert plan_problems(manifest, "p", reg) == (
        Problem("pipelines.p.steps[0]",
                collision_message("p", "p[0][0] (w.one)", "p[0][1] (w.two)", "run_id",
                                  "pipelines.p.merge")),
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nomod_zz_runner_test:f",
         "cannot import module 'nomod_zz_runner_test' for 'nomod_zz_runner_test:f': "
         "No module named 'nomod_zz_runner_test'; searched the installed packages"),
        ("json:nope", "module 'json' has no attribute 'nope'"),
        ("json:decoder.nope", "module 'json' has no attribute 'decoder.nope'"),
    ],
)
def test_manifest_stage_import_errors(reg: StageRegistry, target: str, message: str) -> None:
    manifest = {**one_pipeline(["a"]), "stages": {"s1": target}}
    assert plan_problems(manifest, "p", reg) == (Problem("stages.s1", message),)


def test_manifest_stage_that_is_not_callable(reg: StageRegistry) -> None:
    manifest = {**one_pipeline(["a"]), "stages": {"s1": here("NOT_CALLABLE")}}
    assert plan_problems(manifest, "p", reg) == (
        Problem("stages.s1", "stage 's1': 42 is not callable"),
    )


def test_manifest_stage_clashing_with_a_registered_one(reg: StageRegistry) -> None:
    manifest = {**one_pipeline(["a"]), "stages": {"a": here("manifest_stage")}}
    assert plan_problems(manifest, "p", reg) == (
        Problem("stages.a", "stage 'a' registered twice: by test a and by manifest stages.a"),
    )


def test_manifest_stage_used_but_unimportable(reg: StageRegistry) -> None:
    manifest = {**one_pipeline(["s1"]), "stages": {"s1": "json:nope"}}
    problems = plan_problems(manifest, "p", reg)
    assert problems[0] == Problem("stages.s1", "module 'json' has no attribute 'nope'")


# ---------------------------------------------------------------- properties

ALPHABET = ("s0", "s1", "s2", "s3")
INNER_STEPS = ["s0", ["s1", ["s2", "s3"]]]
NAMES = st.sampled_from((*ALPHABET, "inner"))


def _trees() -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    step: st.SearchStrategy[Any] = st.deferred(
        lambda: NAMES | st.lists(branch, min_size=1, max_size=3))
    branch: st.SearchStrategy[Any] = st.deferred(
        lambda: NAMES | st.lists(step, min_size=1, max_size=3))
    return step, branch


STEP, _BRANCH = _trees()
STEPS = st.lists(STEP, min_size=1, max_size=4)


def expected_walk(steps: list[Any], prefix: str, where: str) -> Iterator[tuple[str, str, str, str]]:
    """Reference flattening of a step list: what Plan.walk must yield."""
    for i, item in enumerate(steps):
        path, loc = f"{prefix}[{i}]", f"{where}[{i}]"
        if isinstance(item, str):
            yield from expected_name(item, path, loc)
        else:
            yield ("ParallelGroup", f"parallel[{len(item)}]", path, loc)
            for j, branch in enumerate(item):
                bpath, bloc = f"{path}[{j}]", f"{loc}[{j}]"
                if isinstance(branch, str):
                    yield from expected_name(branch, bpath, bloc)
                else:
                    yield from expected_walk(branch, bpath, bloc)


def expected_name(name: str, path: str, loc: str) -> Iterator[tuple[str, str, str, str]]:
    if name == "inner":
        yield ("PipelineStep", "inner", path, loc)
        yield from expected_walk(INNER_STEPS, f"{path}/inner", "pipelines.inner.steps")
    else:
        yield ("StageStep", name, path, loc)


def leaves(tree: Any) -> Iterator[str]:
    if isinstance(tree, str):
        if tree == "inner":
            yield from leaves(INNER_STEPS)
        else:
            yield tree
    else:
        for item in tree:
            yield from leaves(item)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_random_step_trees_compile_to_the_same_walk(steps: list[Any]) -> None:
    registry = StageRegistry()
    for name in ALPHABET:
        registry.register(name, passthrough)
    manifest = {"pipelines": {"p": {"steps": steps}, "inner": {"steps": INNER_STEPS}}}
    parsed = parse_manifest(json.dumps(manifest))
    assert parsed.pipelines["p"].steps == steps
    plan = compile_plan(parsed, "p", registry=registry)
    assert shape(plan) == list(expected_walk(steps, "p", "pipelines.p.steps"))
    assert [s.name for s in plan.stages] == list(leaves(steps))


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=5) | st.sampled_from(ALPHABET),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(junk=JSONISH)
def test_junk_steps_parse_or_raise_manifest_error(junk: Any) -> None:
    text = json.dumps({"pipelines": {"p": {"steps": junk}}})
    # messages quote the input; input that spells a leak marker itself proves nothing
    assume(not any(leak in text.lower() for leak in LEAKS))
    try:
        manifest = parse_manifest(text)
    except ManifestError as exc:
        assert_clean(exc.problems)
        assert all(p.path.startswith("pipelines.p.steps") for p in exc.problems), exc.problems
    else:
        assert manifest.pipelines["p"].steps == junk


@settings(max_examples=200, deadline=None)
@given(junk=JSONISH)
def test_junk_manifests_parse_or_raise_manifest_error(junk: Any) -> None:
    try:
        parse_manifest(json.dumps(junk))
    except ManifestError as exc:
        assert exc.problems


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_junk_text_parses_or_raises_manifest_error(text: str) -> None:
    try:
        parse_manifest(text)
    except ManifestError as exc:
        assert exc.problems


def test_a_key_spelled_like_pydantics_marker_is_just_an_unknown_key() -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest('{"[key]": null}')
    assert Problem('"[key]"', "unknown key") in info.value.problems
    assert Problem("pipelines", "required key is missing") in info.value.problems
