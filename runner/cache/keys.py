"""A step's cache key: the sha256 of everything that decides what the step writes.

    key = sha256(canonical JSON of KeyInputs)

:class:`KeyInputs` holds, each as a digest or a short text:

- ``format``: :data:`CACHE_FORMAT`, bumped when what a cache entry means changes;
- ``stage``: the stage's name, and ``code``: its code version
  (:func:`runner.cache.code.code_version`: ``@stage(version=...)`` or its source);
- ``context``: the context type, by qualified name and its fields' names and types;
- ``outside``: for a stage declared ``@stage(observe=fn)``, ``fn(context)``: the version
  of what it reads outside the context (the shipped stages that read a data file a
  parameter names: the file's content hash); left out for the others;
- ``fields``: the content hash (:func:`runner.cache.fields.field_digest`) of each field
  the stage reads: its declared ``reads``, else every field of the context but the run's
  identity (:data:`RUN_SCOPED`: the run id and scratch folder differ in every run, and
  a stage that depends on them is not cacheable) and its logs (:data:`LOGS`). The
  run's parameters reach a stage as its context's ``params`` field, hashed like any
  other field it reads; a stage that names the parameters it reads
  (``reads=["params.tilt"]``, :mod:`runner.declared`) is keyed on each of those
  (``params.tilt``: its value's hash, :data:`ABSENT` when the run does not set it), and
  held to them where it runs (:mod:`runner.orchestration.params`).

The inputs are kept in the cache entry, so ``--dry-run`` can say which of them changed
(:func:`explain`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel

from runner.artifacts.signing import canonical_json
from runner.cache.code import code_version
from runner.cache.fields import field_digest
from runner.declared import PARAM_PREFIX, PARAMS, param_name
from runner.digest import sha256
from runner.registry import StageEntry

__all__ = [
    "ABSENT",
    "CACHE_FORMAT",
    "LOGS",
    "RUN_SCOPED",
    "KeyInputs",
    "StepKey",
    "context_signature",
    "explain",
    "input_digest",
    "read_fields",
    "step_key",
]

CACHE_FORMAT = 1
"""The storage format version of the step cache (entries, objects, key inputs)."""

RUN_SCOPED = frozenset({"run_id", "workspace"})
"""Fields that name the run, not its data: left out of an undeclared stage's inputs."""

ABSENT = "absent"
"""The content hash of a run parameter the run does not set (no sha256 reads so)."""

LOGS = frozenset({"audit_trail"})
"""Append-only logs: a stage adds to them and does not decide on them, and the lines of
parallel branches arrive in the order the branches finish: hashed as an undeclared
input, the step after a group would miss at random. A stage that reads one declares it."""


@dataclass(frozen=True)
class KeyInputs:
    """What a step's key is made of (see the module docstring)."""

    stage: str
    code: str
    context: str
    fields: dict[str, str] = field(default_factory=dict)
    format: int = CACHE_FORMAT
    outside: str | None = None
    """What ``@stage(observe=...)`` says of the data the stage reads outside its context."""

    def as_json(self) -> dict[str, Any]:
        doc = asdict(self)
        if self.outside is None:  # the keys of stages that observe nothing, as they were
            del doc["outside"]
        return doc


@dataclass(frozen=True)
class StepKey:
    """A step's key and the inputs it was computed from."""

    key: str
    inputs: KeyInputs

    @property
    def digests(self) -> Mapping[str, str]:
        """The content hash of each field the key read, by name."""
        return self.inputs.fields


def context_signature(context_type: type[BaseModel]) -> str:
    """The context type as a key input: its qualified name and its fields' names and
    types (a new field, a renamed one or a changed annotation changes it)."""
    fields = {name: repr(info.annotation) for name, info in context_type.model_fields.items()}
    name = f"{context_type.__module__}.{context_type.__qualname__}"
    return f"{name}:" + sha256(canonical_json(fields))[:32]


def read_fields(entry: StageEntry, context: BaseModel) -> list[str]:
    """The inputs whose content goes into the key: declared ``reads`` (those the
    context has; ``params.NAME`` for each run parameter a stage names, when it does not
    read ``params`` whole), else every field but :data:`RUN_SCOPED` and :data:`LOGS`."""
    names = type(context).model_fields
    if not entry.reads:
        return sorted(n for n in names if n not in RUN_SCOPED and n not in LOGS)
    params = entry.params_read
    fields = [n for n in entry.fields_read if n in names and (n != PARAMS or params is None)]
    if params is not None and PARAMS in names:
        fields += [PARAM_PREFIX + name for name in params]
    return sorted(fields)


def input_digest(context: BaseModel, name: str) -> str:
    """The content hash of one input of a key: a field, or one run parameter
    (``params.NAME``; :data:`ABSENT` when the run does not set it)."""
    values = context.__dict__
    param = param_name(name)
    if param is None:
        return field_digest(values.get(name))
    params = values.get(PARAMS)
    if not isinstance(params, dict) or param not in params:
        return ABSENT
    return field_digest(params[param])


def step_key(entry: StageEntry, context: BaseModel, *,
             known: Mapping[str, str] | None = None) -> StepKey:
    """The key of running ``entry`` on ``context``. ``known``: content hashes the caller
    has already (a field restored from an object, or written and hashed by the step
    before), trusted as given; the others are computed."""
    known = known or {}
    digests = {name: known[name] if name in known else input_digest(context, name)
               for name in read_fields(entry, context)}
    inputs = KeyInputs(stage=entry.name, code=code_version(entry),
                       context=context_signature(type(context)), fields=digests,
                       outside=observed(entry, context))
    return StepKey(key=sha256(canonical_json(inputs.as_json())), inputs=inputs)


def observed(entry: StageEntry, context: BaseModel) -> str | None:
    """``entry.observe(context)``: the version of the data it reads outside the context."""
    if entry.observe is None:
        return None
    version = entry.observe(context)
    if version is not None and not isinstance(version, str):
        raise TypeError(f"stage {entry.name!r}: observe returned {type(version).__name__}, "
                        "not a str or None")
    return version


def explain(old: Mapping[str, Any] | None, new: KeyInputs) -> list[str]:
    """Why a step's key differs from the one a cache entry was made with, in words
    (``old``: the entry's recorded inputs; None: no entry for this stage at all)."""
    if old is None:
        return ["never run with the cache"]
    reasons = []
    if old.get("format") != new.format:
        reasons.append("the cache format changed")
    if old.get("code") != new.code:
        reasons.append("its code changed")
    if old.get("context") != new.context:
        reasons.append("the context type changed")
    if old.get("outside") != new.outside:
        reasons.append("the data it reads outside the context changed")
    before = old.get("fields")
    if not isinstance(before, dict):
        before = {}
    for name in sorted(set(before) | set(new.fields)):
        param = param_name(name)
        said = name if param is None else f"param {param}"
        if name not in new.fields:
            reasons.append(f"it no longer reads {said}")
        elif name not in before:
            reasons.append(f"it now reads {said}")
        elif before[name] != new.fields[name]:
            reasons.append(f"{'input ' if param is None else ''}{said} changed")
    return reasons or ["same inputs"]
