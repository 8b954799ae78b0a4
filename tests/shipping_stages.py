"""Stages for the tests of what crosses to worker processes and back (importable by
the workers: the processes executor pickles stages by name)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from runner.context import Context
from runner.manifest import parse_manifest
from runner.orchestration.plan import Plan, compile_plan
from runner.registry import StageRegistry

REG = StageRegistry()
ROWS = 20_000  # above the size from which an untouched frame is not sent back


class PickleProbe:
    """Counts, per process, how often it was pickled (a deep copy does not count)."""

    pickled = 0

    def __reduce__(self) -> tuple[Any, ...]:
        PickleProbe.pickled += 1
        return (PickleProbe, ())

    def __deepcopy__(self, memo: dict[int, Any]) -> PickleProbe:
        return PickleProbe()

    def __eq__(self, other: object) -> bool:  # every copy is the same probe
        return isinstance(other, PickleProbe)

    def __hash__(self) -> int:
        return 0


class ProbeContext(Context):
    probe: Any = None


def big_context() -> ProbeContext:
    index = pd.MultiIndex.from_product(
        [pd.date_range("2020-01-01", periods=ROWS // 4), ["AAA", "BBB", "CCC", "DDD"]],
        names=["date", "ticker"])
    frame = pd.DataFrame({"x": np.arange(ROWS, dtype="float64")}, index=index)
    return ProbeContext(feature_store=frame, probe=PickleProbe())


def reader(ctx: ProbeContext) -> ProbeContext:
    ctx.log(f"read {float(ctx.feature_store['x'].sum())}")
    return ctx


def writer_in_place(ctx: ProbeContext) -> ProbeContext:
    ctx.feature_store.loc[ctx.feature_store.index[0], "x"] = -1.0
    return ctx


def adder(ctx: ProbeContext) -> ProbeContext:
    ctx.feature_store["y"] = ctx.feature_store["x"] * 2
    return ctx


REG.register("ship.reader", reader)
REG.register("ship.reader2", reader)
REG.register("ship.writer", writer_in_place)
REG.register("ship.adder", adder)


def shipping_plan(steps: list[Any]) -> Plan:
    text = json.dumps({"pipelines": {"ship": {"steps": steps}}})
    return compile_plan(parse_manifest(text, source="<shipping stages>"), "ship", registry=REG)
