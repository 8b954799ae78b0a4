"""Stages and DAG shapes shared by the engine tests (importable by worker processes)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from pydantic import Field

from runner.context import Context, MergeRule
from runner.manifest import parse_manifest
from runner.orchestration.plan import Plan, compile_plan
from runner.registry import StageRegistry

REG = StageRegistry()


class ShapeContext(Context):
    """A context with one field of each merge behaviour."""

    value: int = 0
    notes: Annotated[list[str], MergeRule("append")] = Field(default_factory=list)
    table: dict[str, Any] = Field(default_factory=dict)


def _stage(name: str, **kw: Any):
    def deco(fn):
        REG.register(name, fn, **kw)
        return fn
    return deco


@_stage("log.a")
def log_a(ctx):
    ctx.log("a")
    return ctx


@_stage("log.b")
def log_b(ctx):
    ctx.log("b")
    return ctx


@_stage("log.c")
def log_c(ctx):
    ctx.log("c")
    return ctx


@_stage("add.x", writes=["feature_store"])
def add_x(ctx):
    ctx.feature_store["x"] = [1.0, 2.0, 3.0]
    return ctx


@_stage("add.y", writes=["feature_store"])
def add_y(ctx):
    ctx.feature_store["y"] = [4.0, 5.0, 6.0]
    return ctx


@_stage("add.z", writes=["feature_store"])
def add_z(ctx):
    ctx.feature_store = ctx.feature_store.assign(z=[7.0, 8.0, 9.0])
    return ctx


@_stage("pid")
def record_pid(ctx):
    ctx.log(f"pid:{os.getpid()}")
    return ctx


@_stage("mutate.inplace")
def mutate_inplace(ctx):
    """Change everything in place: a frame cell, a list, a dict."""
    ctx.feature_store.iloc[0, 0] = 99.0
    ctx.audit_trail.append("mutated")
    ctx.table["k"] = "mutated"
    return ctx


@_stage("observe")
def observe(ctx):
    """Record what this branch saw of the pre-fork state."""
    ctx.feature_store["seen"] = ctx.feature_store["p"].to_numpy().copy()
    ctx.notes.append(f"table={ctx.table.get('k', '-')}")
    return ctx


@_stage("value.1", writes=["value"])
def value_1(ctx):
    ctx.value = 1
    return ctx


@_stage("value.2", writes=["value"])
def value_2(ctx):
    ctx.value = 2
    return ctx


@_stage("value.1again")
def value_1_again(ctx):
    ctx.value = 1
    return ctx


@_stage("value.2again")
def value_2_again(ctx):
    ctx.value = 2
    return ctx


def _wait_for(path: str, *, seconds: float = 30.0) -> None:
    for _ in range(int(seconds * 100)):
        if Path(path).exists():
            return
        time.sleep(0.01)


@_stage("fail")
def fail(ctx):
    """Mutate the input in place, then raise: forensics must keep the input as received.

    With ``table["started"]`` set, first wait until the other branch is in flight.
    """
    if "started" in ctx.table:
        _wait_for(ctx.table["started"])
    ctx.audit_trail.append("partial")
    ctx.feature_store["half_done"] = 1.0
    raise ValueError("the model diverged")


@_stage("wait.cancel")
def wait_for_cancel(ctx):
    """Say it started, then block until the driver has seen the failure elsewhere."""
    Path(ctx.table["started"]).write_text("x")
    _wait_for(ctx.table["cancelled"])
    ctx.log("waited")
    return ctx


@_stage("returns.none")
def returns_none(ctx):
    ctx.log("forgot to return")


@_stage("workspace.write")
def workspace_write(ctx):
    Path(ctx.workspace, "scratch.txt").write_text("tmp")
    ctx.log(f"workspace:{ctx.workspace}")
    return ctx


def mean_rule(base, values):
    return sum(values) // len(values)


def pick_b(base, branches):
    out = base.model_copy()
    out.audit_trail = [*base.audit_trail, *branches[-1].audit_trail[len(base.audit_trail):]]
    out.value = max(b.value for b in branches)
    return out


REG.register("merge.pick", pick_b, kind="merge_adapter")


def plan_for(steps: list[Any], *, name: str = "p", **spec: Any) -> Plan:
    """Compile a one-pipeline manifest over the test registry."""
    spec.setdefault("context", "tests.shapes:ShapeContext")
    doc = {"pipelines": {name: {"steps": steps, **spec}}}
    return compile_plan(parse_manifest(json.dumps(doc)), name, registry=REG)


def base_context(**kw: Any) -> ShapeContext:
    return ShapeContext(feature_store=pd.DataFrame({"p": [1.0, 2.0, 3.0]}), **kw)
