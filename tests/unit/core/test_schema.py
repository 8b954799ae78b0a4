"""The committed JSON Schema of the manifest stays in step with the pydantic models."""

import json
from pathlib import Path
from typing import Any

import pytest

from runner.manifest import dump_schema, parse_manifest

CONFIGS = Path(__file__).parents[3] / "configs"
SCHEMA_FILE = CONFIGS / "manifest.schema.json"

VALID = {
    "$schema": "./manifest.schema.json",
    "pipelines": {
        "alpha.full": {
            "description": "the whole alpha pillar",
            "steps": ["load", ["features", ["train", "score"]], "alpha.report"],
            "merge": {"run_id": "last_wins", "params": "mymod.rules:union"},
            "merge_adapter": "combine",
            "context": "runner.context:SelectionContext",
        },
        "alpha.report": {"steps": ["report"]},
    },
    "stages": {"load": "mymod.stages:load"},
    "adapters": [{"from": "runner.context:SelectionContext",
                  "to": "runner.context:MetaContext", "fn": "mymod.adapters:to_meta"}],
}


def test_committed_schema_is_current() -> None:
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    assert dump_schema() == committed, (
        f"{SCHEMA_FILE} is stale: regenerate it with "
        "`runner schema > configs/manifest.schema.json`"
    )


def test_schema_describes_the_manifest() -> None:
    schema = json.loads(dump_schema())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "Runner pipeline manifest"
    assert schema["additionalProperties"] is False
    assert {"$schema", "pipelines", "stages", "adapters"} <= set(schema["properties"])
    assert schema["required"] == ["pipelines"]
    pipeline = schema["$defs"]["PipelineSpec"]
    assert pipeline["additionalProperties"] is False
    assert set(pipeline["properties"]) == {
        "steps", "context", "merge", "merge_adapter", "resources", "cache",
        "description"}
    assert set(schema["$defs"]["AdapterSpec"]["properties"]) == {"from", "to", "fn"}
    assert schema["$defs"]["AdapterSpec"]["required"] == ["from", "to", "fn"]
    assert pipeline["required"] == ["steps"]


def test_schema_has_no_internal_fields() -> None:
    schema = json.loads(dump_schema())
    assert set(schema["properties"]) == {"$schema", "pipelines", "stages", "adapters"}


def test_dump_schema_is_deterministic_text() -> None:
    text = dump_schema()
    assert text == dump_schema()
    assert text.endswith("}\n")
    assert json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n" == text


def test_valid_example_is_a_valid_manifest() -> None:
    manifest = parse_manifest(json.dumps(VALID))
    assert list(manifest.pipelines) == ["alpha.full", "alpha.report"]


@pytest.fixture
def validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_accepts_a_valid_manifest(validator: Any) -> None:
    assert list(validator.iter_errors(VALID)) == []
    assert list(validator.iter_errors({"pipelines": {"p": {"steps": ["a"]}}})) == []


@pytest.mark.parametrize(
    ("manifest", "where"),
    [
        ({**VALID, "stage": {}}, []),
        ({"pipelines": {"p": {"steps": ["a"], "step": ["b"]}}}, ["pipelines", "p"]),
        ({"pipelines": {"p": {"steps": ["a"]}},
          "adapters": [{"from": "m:A", "to": "m:B", "fn": "m:f", "fun": "m:g"}]},
         ["adapters", 0]),
    ],
)
def test_schema_rejects_an_unknown_key(validator: Any, manifest: Any, where: list[Any]) -> None:
    errors = list(validator.iter_errors(manifest))
    assert [e.validator for e in errors] == ["additionalProperties"]
    assert list(errors[0].absolute_path) == where


@pytest.mark.parametrize(
    "manifest",
    [
        {"pipelines": {"p": {"steps": []}}},
        {"pipelines": {"p": {"steps": ["a", []]}}},
        {"pipelines": {"p": {"steps": ["a", 3]}}},
        {"pipelines": {"p": {"steps": ["a b"]}}},
        {"pipelines": {"p": {"steps": ["a"], "merge": {"x": "apend"}}}},
        {"pipelines": {"p": {"steps": ["a"], "context": "nocolon"}}},
        {"pipelines": {}},
        {},
    ],
)
def test_schema_rejects_what_the_parser_rejects(validator: Any, manifest: Any) -> None:
    assert list(validator.iter_errors(manifest)) != []


@pytest.mark.parametrize(
    "manifest",
    [
        {"pipelines": {"p q": {"steps": ["a"]}}},
        {"pipelines": {"p q": 3}},
        {"pipelines": {"p": {"steps": ["a"]}}, "stages": {"a b": 3}},
    ],
)
def test_schema_rejects_invalid_names_as_keys(validator: Any, manifest: Any) -> None:
    assert list(validator.iter_errors(manifest)) != []
