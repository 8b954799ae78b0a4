"""Branch resources in the manifest: parsing, errors, and what each branch asks for."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.errors import ManifestError, PlanError
from runner.manifest import MAX_MEMORY, parse_manifest, parse_memory
from runner.orchestration.plan import compile_plan
from tests.shapes import REG


def plan(resources, steps=None):
    doc = {"pipelines": {"p": {"context": "tests.shapes:ShapeContext",
                               "steps": steps or ["log.a", [["log.b"], ["log.c", "log.a"]]],
                               "resources": resources}}}
    return compile_plan(parse_manifest(json.dumps(doc)), "p", registry=REG)


@pytest.mark.parametrize(("text", "expected"), [
    ("2GiB", 2 * 1024**3), ("512Mi", 512 * 1024**2), ("1.5GB", 1_500_000_000),
    ("100", 100), (" 3 kb ", 3000), (1024, 1024)])
def test_memory_sizes(text, expected):
    assert parse_memory(text) == expected


@given(st.integers(min_value=0, max_value=2**50),
       st.sampled_from(["", "b", "Ki", "Mi", "Gi", "KB", "MB", "GB"]))
def test_memory_units_scale(amount, unit):
    scale = {"": 1, "b": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "KB": 1000,
             "MB": 1000**2, "GB": 1000**3}[unit]
    if amount * scale > MAX_MEMORY:  # more than any Kubernetes quantity or Ray can hold
        with pytest.raises(ValueError, match="is more than"):
            parse_memory(f"{amount}{unit}")
    else:
        assert parse_memory(f"{amount}{unit}") == amount * scale


def test_each_branch_asks_for_the_most_its_stages_ask():
    p = plan({"*": {"num_cpus": 1, "max_retries": 1},
              "log.c": {"num_cpus": 2, "memory": "1GiB", "resources": {"node2": 1}},
              "log.a": {"memory": "2GiB", "num_gpus": 0.5}})
    group = p.steps[1]
    first, second = (dict(b.resources) for b in group.branches)
    assert first == {"num_cpus": 1.0, "max_retries": 1}
    assert second.pop("resources") == {"node2": 1.0}
    assert second == {"num_cpus": 2.0, "max_retries": 1, "memory": 2 * 1024**3,
                      "num_gpus": 0.5}


def test_no_resources_means_an_empty_request():
    p = plan({})
    assert all(dict(b.resources) == {} for b in p.steps[1].branches)


@pytest.mark.parametrize(("resources", "where", "says"), [
    ({"log.x": {"num_cpus": 1}}, 'pipelines.p.resources."log.x"', "did you mean"),
    ({"*": {"num_cpus": -1}}, "pipelines.p.resources.\"*\".num_cpus", "greater than or equal"),
    ({"*": {"memory": "lots"}}, "pipelines.p.resources.\"*\".memory", "expected bytes or a size"),
    ({"*": {"cpus": 1}}, "pipelines.p.resources.\"*\".cpus", "unknown key"),
])
def test_bad_resources_name_the_place(resources, where, says):
    with pytest.raises((ManifestError, PlanError)) as info:
        plan(resources)
    text = str(info.value)
    assert where in text and says in text, text
