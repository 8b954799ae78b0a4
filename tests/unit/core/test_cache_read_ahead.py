"""Reading the cache ahead of the steps, through the real step loop and a real store:
before the first step, the keys of a chain of hits are made from the hashes the
entries give and their outputs start being read on reader threads; the steps' own
lookups take them. Each entry is read once, all before the first step starts; the
walk stops where code runs; an entry that does not verify still fails its own step,
not the run's start; the reader threads end with the run."""

from __future__ import annotations

import json
import pickle
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import Field

from runner.artifacts.objects import object_path
from runner.cache.entries import list_entries, read_entry
from runner.context import Context
from runner.errors import IntegrityError
from runner.orchestration.hooks import RunHook
from runner.orchestration.records import RunResult
from runner.registry import StageRegistry
from runner.sdk import QuantSDK

REG = StageRegistry()
CONTEXT = f"{__name__}:AheadContext"


class AheadContext(Context):
    params: dict[str, Any] = Field(default_factory=dict)
    frame: pd.DataFrame = Field(default_factory=pd.DataFrame)
    total: float = 0.0
    doubled: pd.DataFrame = Field(default_factory=pd.DataFrame)


def make(ctx: Any) -> Any:
    ctx.frame = pd.DataFrame({"v": [float(i) for i in range(50)]})
    ctx.log("made")
    return ctx


def nudge(ctx: Any) -> Any:
    """Not cached: code that runs between two cached steps."""
    ctx.log("nudged")
    return ctx


def total(ctx: Any) -> Any:
    ctx.total = float(ctx.frame["v"].sum())
    return ctx


def double(ctx: Any) -> Any:
    ctx.doubled = ctx.frame * 2 + ctx.total
    return ctx


REG.register("a.make", make)
REG.register("a.nudge", nudge, cache=False)
REG.register("a.total", total)
REG.register("a.double", double)


class Starts(RunHook):
    """When each step started (the loop's own clock: time.time())."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    def on_step_start(self, run: Any, step: Any) -> None:
        self.started[step.name] = time.time()


@pytest.fixture
def sdk(tmp_path: Path) -> QuantSDK:
    manifest = {"pipelines": {
        "chain": {"steps": ["a.make", "a.total", "a.double"], "context": CONTEXT},
        "nudged": {"steps": ["a.make", "a.nudge", "a.total", "a.double"], "context": CONTEXT}}}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return QuantSDK(path, registry=REG, artifacts=tmp_path / "artifacts",
                    workspace_root=tmp_path / "ws")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """Every cache entry read (its stage, when), through the module's own reader."""
    seen: list[tuple[str, float]] = []

    def counted(store: Any, stage: str, key: str, **kwargs: Any) -> Any:
        seen.append((stage, time.time()))
        return read_entry(store, stage, key, **kwargs)

    monkeypatch.setattr("runner.cache.step_cache.read_entry", counted)
    return seen


def _run(sdk: QuantSDK, pipeline: str, hooks: tuple[RunHook, ...] = ()) -> RunResult:
    return sdk.run_pipeline(pipeline, AheadContext(), tracing=False, cache=True, hooks=hooks)


def _status(result: RunResult) -> dict[str, str]:
    return {r.name: r.status for r in result.records if r.kind == "stage"}


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("runner-cache-read")]


def test_a_fully_cached_run_reads_every_entry_once_before_its_first_step(
        sdk: QuantSDK, reads: list[tuple[str, float]]) -> None:
    first = _run(sdk, "chain")
    reads.clear()
    starts = Starts()
    second = _run(sdk, "chain", (starts,))
    assert set(_status(second).values()) == {"cached"}
    assert sorted(stage for stage, _ in reads) == ["a.double", "a.make", "a.total"]  # once each
    assert max(when for _, when in reads) <= min(starts.started.values())
    assert second.context.doubled.equals(first.context.doubled)
    assert second.context.total == first.context.total
    assert second.context.audit_trail == first.context.audit_trail


def test_the_walk_stops_where_code_runs(sdk: QuantSDK, reads: list[tuple[str, float]]) -> None:
    _run(sdk, "nudged")
    reads.clear()
    starts = Starts()
    second = _run(sdk, "nudged", (starts,))
    assert _status(second) == {"a.make": "cached", "a.nudge": "succeeded", "a.total": "cached",
                               "a.double": "cached"}
    when = dict(reads)
    assert sorted(when) == ["a.double", "a.make", "a.total"] and len(reads) == 3
    assert when["a.make"] <= starts.started["a.make"]  # read ahead
    assert when["a.total"] >= starts.started["a.nudge"]  # after the code ran: by its lookup
    assert second.context.audit_trail == ["made", "nudged"]


def test_reading_ahead_stops_past_its_byte_budget(sdk: QuantSDK, reads: list[tuple[str, float]],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Large outputs are not all decoded ahead of their steps: past the budget (stored
    bytes) the steps restore their own, as without the look-ahead."""
    first = _run(sdk, "chain")
    monkeypatch.setattr("runner.cache.step_cache.AHEAD_BYTES", 1)
    reads.clear()
    starts = Starts()
    second = _run(sdk, "chain", (starts,))
    assert set(_status(second).values()) == {"cached"}
    when: dict[str, list[float]] = {}
    for stage, at in reads:
        when.setdefault(stage, []).append(at)
    assert max(when["a.make"]) <= starts.started["a.make"]  # the first: read ahead
    assert len(when["a.total"]) == 2  # read ahead, not started (past the budget), read again
    assert max(when["a.total"]) >= starts.started["a.total"]  # by its own lookup
    assert max(when["a.double"]) >= starts.started["a.double"]
    assert second.context.doubled.equals(first.context.doubled)


def test_an_object_that_does_not_verify_fails_the_run_at_its_own_step(sdk: QuantSDK, tmp_path: Path
                                                           ) -> None:
    _run(sdk, "chain")
    store = sdk.store()
    [doc] = [e.doc for e in list_entries(store, stage="a.double") if e.doc is not None]
    digest = doc.outputs["doubled"].object
    assert digest is not None
    (tmp_path / "artifacts" / object_path(digest)).write_bytes(b"not the frame")
    starts = Starts()
    with pytest.raises(IntegrityError, match="does not match its digest") as info:
        _run(sdk, "chain", (starts,))
    assert "the step cache of a.double" in str(info.value)  # the store's error, at its step
    assert sorted(starts.started) == ["a.double", "a.make", "a.total"]  # the steps before ran


def test_the_reader_threads_end_with_the_run(sdk: QuantSDK) -> None:
    _run(sdk, "chain")
    _run(sdk, "chain")
    for thread in _reader_threads():
        thread.join(timeout=30)
    assert _reader_threads() == []


def test_a_cache_holding_what_it_read_ahead_still_travels_to_workers(sdk: QuantSDK) -> None:
    first = _run(sdk, "chain")
    cache = sdk.step_cache("chain", cache=True)
    assert cache is not None
    entry = REG.get("a.make")
    assert entry is not None
    key = cache.key(entry, AheadContext())
    assert key is not None
    with cache.prefetching() as read:
        ahead = read(key)
    assert ahead is not None
    sets, appends = ahead
    assert set(sets) == {"frame"} and list(appends) == ["audit_trail"]
    travelled = pickle.loads(pickle.dumps(cache))  # what it read ahead stays here
    for memo in (cache, travelled):
        hit = memo.lookup(key)
        assert hit is not None and hit.values["frame"].equals(first.context.frame)
