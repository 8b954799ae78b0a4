"""Load and validate ``configs/manifest.json`` into frozen pydantic specs.

Every problem is reported with the JSON path it sits at, e.g.
``pipelines."alpha.full".steps[2][0]``. This module never imports pandas:
it only knows names, not what they do. The text is read within fixed limits
(:mod:`runner.manifest_json`) and the include graph checked in linear time
(:mod:`runner.manifest_graph`) before anything walks it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StringConstraints,
    ValidationError,
    field_validator,
)
from typing_extensions import TypeAliasType

from runner.errors import ManifestError, Problem
from runner.manifest_graph import (
    MAX_PLAN_STEPS,
    Ref,
    count_stage_steps,
    graph_problems,
    iter_refs,
)
from runner.manifest_json import (
    DEFAULT_MANIFEST,
    MAX_NESTING,
    JSONProblems,
    capped,
    default_manifest,
    format_path,
    read_json,
)
from runner.words import did_you_mean

__all__ = [
    "DEFAULT_MANIFEST",
    "MAX_AMOUNT",
    "MAX_MEMORY",
    "MAX_NAME_LENGTH",
    "MAX_NESTING",
    "MAX_PLAN_STEPS",
    "MAX_RETRIES",
    "AdapterSpec",
    "Manifest",
    "PipelineSpec",
    "Ref",
    "default_manifest",
    "dump_schema",
    "format_path",
    "iter_refs",
    "load_manifest",
    "parse_manifest",
]

MAX_NAME_LENGTH = 200
"""Longest stage, pipeline or import name (suggestions compare names pairwise)."""
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH,
                                        pattern=r"^[A-Za-z0-9_.\-]+$")]
ImportPath = Annotated[
    str, StringConstraints(max_length=4 * MAX_NAME_LENGTH,
                           pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
]
BUILTIN_RULES = ("append", "concat_columns", "error", "last_wins", "first_wins")
Rule = Union[  # noqa: UP007 - a runtime alias pydantic reads
    Literal["append", "concat_columns", "error", "last_wins", "first_wins"], ImportPath]

# A step names a stage or pipeline, or is a parallel group (a list of branches).
# A branch is a name or a list of steps run in sequence.
Step = TypeAliasType(  # type: ignore[misc]
    "Step",
    Union[Name, Annotated[list["Branch"], Field(min_length=1)]],  # type: ignore[misc]  # noqa: UP007
)
Branch = TypeAliasType(  # type: ignore[misc]
    "Branch", Union[Name, Annotated[list["Step"], Field(min_length=1)]]  # noqa: UP007
)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              defer_build=True)  # built by the first manifest validated


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3,
          "gib": 1024**3, "ti": 1024**4, "tib": 1024**4}


MAX_MEMORY = 2**63 - 1
"""Most bytes a branch may ask for (what a Kubernetes quantity or Ray holds)."""
MAX_AMOUNT = 1_000_000
"""Most CPUs, GPUs or units of a custom resource a branch may ask for."""
MAX_RETRIES = 100


def parse_memory(value: int | float | str) -> int:
    """Bytes from ``2147483648``, ``"2GiB"``, ``"512Mi"`` or ``"1.5GB"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value <= MAX_MEMORY:
            raise ValueError(f"memory must be between 0 and {MAX_MEMORY} bytes")
        return int(value)
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"memory {value!r}: expected bytes or a size such as '2GiB', "
                         "'512Mi', '1.5GB'")
    size = int(Decimal(match.group(1)) * _UNITS[unit])  # exact, unlike a float
    if size > MAX_MEMORY:
        raise ValueError(f"memory {value!r} is more than {MAX_MEMORY} bytes")
    return size


Amount = Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
ResourceKey = Annotated[str, StringConstraints(min_length=1, pattern=r"^(\*|[A-Za-z0-9_.\-]+)$")]


class ResourceSpec(_Spec):
    """What one branch asks of the executor that runs it (passed to Ray)."""

    num_cpus: Amount | None = Field(
        default=None, description="CPUs the branch's task reserves (Ray default: 1)")
    num_gpus: Amount | None = Field(
        default=None, description="GPUs the branch's task reserves")
    memory: (Annotated[int, Field(ge=0, le=MAX_MEMORY)]
             | Annotated[str, Field(min_length=1, max_length=40)] | None) = Field(
        default=None, description="Memory to reserve: bytes, or a size such as '2GiB'")
    max_retries: Annotated[int, Field(ge=0, le=MAX_RETRIES)] | None = Field(
        default=None, description="Times to rerun the branch when its worker dies")
    resources: dict[Name, Amount] = Field(
        default_factory=dict, description="Custom resources, e.g. {\"gpu_node\": 1}")

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, str):
            parse_memory(value)
        return value


class PipelineSpec(_Spec):
    """One named pipeline: ordered steps plus how its parallel groups merge."""

    steps: Annotated[list[Step], Field(min_length=1)]
    context: ImportPath | None = Field(
        default=None, description="Context type, 'module:Type'; default: the caller's type"
    )
    merge: dict[str, Rule] = Field(
        default_factory=dict, description="Per-field merge rule overrides for this pipeline"
    )
    merge_adapter: Name | None = Field(
        default=None, description="Merge adapter stage that replaces the built-in merge"
    )
    resources: dict[ResourceKey, ResourceSpec] = Field(
        default_factory=dict,
        description="Per-branch resources for parallel executors (Ray), keyed by stage name, "
                    "or '*' for every branch of this pipeline's groups; a branch asks for "
                    "the most any of its stages asks")
    cache: StrictBool = Field(
        default=False, description="Keep this pipeline's steps in the step cache and reuse "
                                   "them when their code and inputs are unchanged")
    description: str | None = None


class AdapterSpec(_Spec):
    """A context adapter mapping one context type to another."""

    from_: ImportPath = Field(alias="from")
    to: ImportPath
    fn: ImportPath


class Manifest(_Spec):
    """The whole manifest: pipelines, optional stage import paths and adapters."""

    schema_: str | None = Field(default=None, alias="$schema")
    pipelines: Annotated[dict[Name, PipelineSpec], Field(min_length=1)]
    stages: dict[Name, ImportPath] = Field(default_factory=dict)
    adapters: list[AdapterSpec] = Field(default_factory=list)
    _source: str = PrivateAttr(default="<manifest>")
    _digest: str = PrivateAttr(default="")
    _counts: dict[str, int] | None = PrivateAttr(default=None)

    def stage_steps(self, pipeline: str) -> int:
        """How many stage steps ``pipeline`` runs once its nested pipelines are expanded
        (counted for every pipeline at once, in time linear in the manifest)."""
        if self._counts is None:
            self._counts = count_stage_steps({n: p.steps for n, p in self.pipelines.items()})
        return self._counts[pipeline]

    @property
    def source(self) -> str:
        """Where the manifest was read from."""
        return self._source

    @property
    def digest(self) -> str:
        """sha256 of the manifest text: a run refuses to resume on another manifest."""
        return self._digest


# ---------------------------------------------------------------- parsing


_UNION_TAGS = re.compile(
    r"^(str|list\[.*\]|literal\[.*\]|constrained-str|function-.*|Step|Branch|json-or-python.*)$"
)


def _problems_from(error: ValidationError, raw: Any) -> list[Problem]:
    """Turn pydantic's errors into one problem per JSON path, in words."""
    grouped: dict[tuple[str | int, ...], list[dict[str, Any]]] = {}
    for raw_err in error.errors():
        err: dict[str, Any] = dict(raw_err)
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and _UNION_TAGS.match(p)))
        if loc and loc[-1] == "[key]" and err["type"] != "extra_forbidden":
            # pydantic's marker for "this key is not a valid name" (a real key named
            # "[key]" only ever comes back as extra_forbidden)
            loc = loc[:-1]
            err["type"] = "key_too_long" if err["type"] == "string_too_long" else "invalid_key"
        grouped.setdefault(loc, []).append(err)
    # A union error at a list is explained by the errors inside it: keep the deepest.
    inner = {loc[:k] for loc in grouped for k in range(len(loc))}  # locs with errors below
    for loc in list(grouped):
        deeper = loc in inner
        if deeper and {e["type"] for e in grouped[loc]} <= {"string_type", "list_type"}:
            del grouped[loc]
    problems = []
    for loc, errs in grouped.items():
        problems.append(Problem(format_path(loc), _describe(loc, errs, raw)))
    return problems


def _value_at(raw: Any, loc: Sequence[str | int]) -> Any:
    for part in loc:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return None
    return raw


def _describe(loc: tuple[str | int, ...], errs: list[dict[str, Any]], raw: Any) -> str:
    types = {e["type"] for e in errs}
    value = _value_at(raw, loc)
    shown = json.dumps(value) if value is not None else "null"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    if "extra_forbidden" in types and loc:
        return "unknown key" + _suggest(str(loc[-1]), _allowed_keys(loc))
    if "key_too_long" in types or "string_too_long" in types:
        text = str(loc[-1] if "key_too_long" in types else value)
        limit = next(e.get("ctx", {}).get("max_length") for e in errs
                     if e["type"] in ("key_too_long", "string_too_long"))
        return f"{len(text):,} characters long, more than the limit of {limit}"
    if "invalid_key" in types:
        return f"invalid name {json.dumps(loc[-1])}: use letters, digits, '.', '_' and '-'"
    if "missing" in types:
        return "required key is missing"
    if loc and loc[-1] == "steps" and not isinstance(value, list):
        return f"steps must be a list of steps, got {shown}"
    if "dict_type" in types:
        return f"expected an object, got {shown}"
    if "missing" in types:
        return "required key is missing"
    in_steps = "steps" in loc
    depth = len(loc) - loc.index("steps") - 1 if in_steps else 0
    if "too_short" in types and isinstance(value, list | dict):
        if not isinstance(value, list):
            return "must not be empty"
        what = {0: "steps", 1: "a parallel group"}.get(depth, "a branch" if depth % 2 == 0
                                                         else "a parallel group")
        return f"{what} must not be empty"
    if in_steps and isinstance(value, str):
        if value == "":
            return "a step name must not be empty"
        return f"invalid step name {shown}: use letters, digits, '.', '_' and '-'"
    if in_steps and depth % 2 == 0:
        return ("expected a stage or pipeline name (string) or a branch (list of steps), "
                f"got {shown}")
    if in_steps:
        return f"expected a stage or pipeline name (string) or a parallel group (list), got {shown}"
    if "string_pattern_mismatch" in types and isinstance(value, str):
        if {"fn", "stages", "from", "to", "context"} & set(loc):
            return f"expected an import path 'module:attribute', got {shown}"
        if "merge" in loc:
            return _unknown_rule(value)
        return f"invalid name {shown}: use letters, digits, '.', '_' and '-'"
    if "merge" in loc:
        return _unknown_rule(value)
    msgs = "; ".join(sorted({e["msg"] for e in errs}))
    return f"{msgs}, got {shown}"


def _unknown_rule(value: Any) -> str:
    shown = json.dumps(value) if value is not None else "null"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    hint = did_you_mean(value, BUILTIN_RULES, ignore_case=True) if isinstance(value, str) else ""
    return (f"unknown merge rule {shown}: use one of {', '.join(BUILTIN_RULES)} "
            f"or 'module:callable'{hint}")


def _allowed_keys(loc: tuple[str | int, ...]) -> list[str]:
    if len(loc) == 1:
        return ["$schema", "pipelines", "stages", "adapters"]
    if len(loc) == 3 and loc[0] == "pipelines":
        return list(PipelineSpec.model_fields)
    if len(loc) == 5 and loc[0] == "pipelines" and loc[2] == "resources":
        return list(ResourceSpec.model_fields)
    if len(loc) == 3 and loc[0] == "adapters":
        return ["from", "to", "fn"]
    return []


def _suggest(name: str, candidates: Iterable[str]) -> str:
    return did_you_mean(name, candidates)


def parse_manifest(text: str, *, source: str = "<manifest>") -> Manifest:
    """Validate manifest JSON text; raise :class:`ManifestError` listing every problem."""
    try:
        raw, problems = read_json(text)
    except JSONProblems as exc:
        raise ManifestError(source, capped(list(exc.problems))) from exc
    if not isinstance(raw, dict):
        raise ManifestError(source, [Problem("", "the manifest must be a JSON object")])
    manifest = None
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_problems_from(exc, raw))
    if manifest is not None:
        problems.extend(graph_problems({n: p.steps for n, p in manifest.pipelines.items()}))
    if problems:
        raise ManifestError(source, capped(problems))
    assert manifest is not None
    manifest._source = source
    manifest._digest = hashlib.sha256(text.encode()).hexdigest()
    return manifest


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate a manifest file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        hint = "file not found (run from the project folder, or pass --manifest PATH or " \
               "set RUNNER_MANIFEST)"
        raise ManifestError(str(path), [Problem("", hint)]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(str(path), [Problem("", f"cannot read: {exc}")]) from exc
    return parse_manifest(text, source=str(path))


def _close_pattern_objects(node: Any) -> None:
    """Objects keyed by names accept only valid names (pydantic leaves them open)."""
    if isinstance(node, dict):
        if "patternProperties" in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_pattern_objects(value)
    elif isinstance(node, list):
        for value in node:
            _close_pattern_objects(value)


def dump_schema() -> str:
    """The manifest's JSON Schema, as committed in ``configs/manifest.schema.json``."""
    schema = Manifest.model_json_schema(by_alias=True)
    _close_pattern_objects(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Runner pipeline manifest"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
