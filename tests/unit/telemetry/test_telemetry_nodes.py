"""The tracing hook's record of a plan (runner.telemetry.nodes): one node per step,
pipeline, group and branch, found by path, and the step spans' plain form."""

from __future__ import annotations

import json

from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from runner.context import Context
from runner.manifest import parse_manifest
from runner.orchestration.plan import Branch, ParallelGroup, PipelineStep, Plan, compile_plan
from runner.registry import StageRegistry
from runner.telemetry.nodes import TraceNode, index_steps
from runner.telemetry.spans import OK, plain_listed, plain_span, resource_attrs


def fanout_plan() -> Plan:
    """A group whose first branch runs a stage then a nested pipeline of two
    one-stage branches (a branch of one step shares that step's path)."""
    registry = StageRegistry()
    for name in ("a", "b", "m1", "m2", "c", "z"):
        def fn(ctx: Context) -> Context:
            return ctx
        fn.__name__ = fn.__qualname__ = name
        registry.register(name, fn)
    text = json.dumps({"pipelines": {
        "inner": {"steps": [["m1", "m2"]]},
        "outer": {"steps": ["a", [["b", "inner"], "c"], "z"]}}})
    return compile_plan(parse_manifest(text, source="<nodes test>"), "outer",
                        registry=registry)


def walk(steps, out):
    for item in steps:
        out.append(item)
        if isinstance(item, (PipelineStep, Branch)):
            walk(item.steps, out)
        elif isinstance(item, ParallelGroup):
            walk(item.branches, out)
    return out


def test_every_step_and_branch_has_its_own_node_under_its_container():
    plan = fanout_plan()
    nodes: dict[str, TraceNode] = {}
    branches: dict[str, TraceNode] = {}
    index_steps(plan.steps, parent=None, branch=None, nodes=nodes, branches=branches,
                pid=7, cache={})
    items = walk(plan.steps, [])
    steps = [i for i in items if not isinstance(i, Branch)]
    forks = [i for i in items if isinstance(i, Branch)]
    assert sorted(nodes) == sorted(s.path for s in steps)
    assert sorted(branches) == sorted(b.path for b in forks)
    shared = {b.path for b in forks} & {s.path for s in steps}
    assert shared, "the plan has a branch of one step (same path): kept apart"
    for path in shared:
        assert branches[path] is not nodes[path]
        assert nodes[path].parent is branches[path]
    # each stage's node knows its container, its branch and its span's attributes
    for container in (i for i in items if isinstance(i, (PipelineStep, Branch))):
        own = branches[container.path] if isinstance(container, Branch) \
            else nodes[container.path]
        for step in container.steps:
            node = branches[step.path] if isinstance(step, Branch) else nodes[step.path]
            assert node.parent is own
    top = nodes[plan.steps[0].path]
    assert (top.parent, top.branch, top.name) == (None, None, "stage a")
    assert top.attrs == {"runner.kind": "stage", "runner.path": plan.steps[0].path,
                         "runner.stage": "a", "runner.worker.pid": 7}
    inner = next(s for s in steps if getattr(s, "name", "") == "m1")
    assert nodes[inner.path].branch == inner.path  # its branch: the one it is alone in
    assert (nodes[inner.path].attrs or {})["runner.branch"] == inner.path


def test_a_second_run_of_the_plan_takes_the_step_attributes_made_by_the_first():
    plan = fanout_plan()
    cache: dict = {}
    first: dict[str, TraceNode] = {}
    second: dict[str, TraceNode] = {}
    for nodes in (first, second):
        index_steps(plan.steps, parent=None, branch=None, nodes=nodes, branches={},
                    pid=7, cache=cache)
    stage = plan.steps[0].path
    assert first[stage] is not second[stage]  # live state is per run
    assert first[stage].attrs is second[stage].attrs  # attributes made once per plan


def test_the_plain_form_of_a_step_span_is_plain_span_s():
    resource = Resource({"service.name": "runner"})
    context = SpanContext(0xABC, 0x12, False, TraceFlags(TraceFlags.SAMPLED))
    parent = SpanContext(0xABC, 0x34, False, TraceFlags(TraceFlags.SAMPLED))
    attrs = {"runner.kind": "stage", "runner.stage.writes": ["x"]}
    for status in (OK, Status(StatusCode.ERROR, "boom"), Status(StatusCode.UNSET)):
        fast = plain_listed(f"{0xABC:032x}", f"{0x12:016x}", f"{0x34:016x}", "stage s",
                            5, 9, status, attrs, resource_attrs(resource))
        assert fast == plain_span(name="stage s", context=context, parent=parent,
                                  start_ns=5, end_ns=9, status=status, attributes=attrs,
                                  events=[], resource=resource)
