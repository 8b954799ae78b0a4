"""What a run knows of its fields' content hashes, through the real step loop: a cache
entry keeps the hash of each field the step wrote, a fully cached run hashes only the
fields it started with (and its keys are the uncached run's), and a stage that changes
a field in place makes the next key hash that field again: never a stale hash, so never
a wrong hit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import Field

import runner.cache.keys as keys
from runner.cache.entries import list_entries
from runner.cache.fields import field_digest
from runner.context import Context
from runner.orchestration.records import RunResult
from runner.registry import StageRegistry
from runner.sdk import QuantSDK

REG = StageRegistry()
CONTEXT = f"{__name__}:DigestContext"


def _start() -> pd.DataFrame:
    return pd.DataFrame({"v": [1.0, 2.0]})


class DigestContext(Context):
    params: dict[str, Any] = Field(default_factory=dict)
    frame: pd.DataFrame = Field(default_factory=pd.DataFrame)
    total: float = 0.0


def make(ctx: Any) -> Any:
    ctx.frame = pd.DataFrame({"v": [float(v) * 2 for v in ctx.frame["v"]]})
    return ctx


def bump(ctx: Any) -> Any:
    """Not cached (it reads the outside world, say): changes the frame in place."""
    ctx.frame.iloc[0, 0] += float(ctx.params.get("bump", 0))
    return ctx


def total(ctx: Any) -> Any:
    ctx.total = float(ctx.frame["v"].sum())
    return ctx


REG.register("d.make", make, reads=["frame"])
REG.register("d.bump", bump, cache=False)
REG.register("d.total", total, reads=["frame"])


@pytest.fixture
def sdk(tmp_path: Path) -> QuantSDK:
    manifest = {"pipelines": {
        "chain": {"steps": ["d.make", "d.total"], "context": CONTEXT},
        "bumped": {"steps": ["d.make", "d.bump", "d.total"], "context": CONTEXT}}}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return QuantSDK(path, registry=REG, artifacts=tmp_path / "artifacts",
                    workspace_root=tmp_path / "ws")


def _run(sdk: QuantSDK, pipeline: str, **params: Any) -> RunResult:
    return sdk.run_pipeline(pipeline, DigestContext(params=params, frame=_start()),
                            tracing=False, cache=True)


def _status(result: RunResult) -> dict[str, str]:
    return {r.name: r.status for r in result.records if r.kind == "stage"}


def test_an_entry_keeps_the_content_hash_of_what_the_step_wrote(sdk: QuantSDK) -> None:
    _run(sdk, "chain")
    (made,) = [e.doc for e in list_entries(sdk.store(), stage="d.make")]
    assert made is not None
    assert made.outputs["frame"].digest == field_digest(pd.DataFrame({"v": [2.0, 4.0]}))
    (summed,) = [e.doc for e in list_entries(sdk.store(), stage="d.total")]
    assert summed is not None and summed.outputs["total"].digest == field_digest(6.0)


def test_a_fully_cached_run_hashes_only_what_it_started_with(
        sdk: QuantSDK, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _run(sdk, "chain")
    hashed: list[Any] = []

    def counted(value: Any) -> str:
        hashed.append(value)
        return field_digest(value)

    monkeypatch.setattr(keys, "field_digest", counted)
    again = _run(sdk, "chain")
    assert _status(again) == {"d.make": "cached", "d.total": "cached"}
    # d.make's input (the frame the run started with); d.total reads the frame d.make's
    # entry restored, whose hash the entry has: not hashed again
    assert len(hashed) == 1 and hashed[0]["v"].tolist() == [1.0, 2.0]
    assert [r.cache_key for r in again.records] == [r.cache_key for r in first.records]
    assert again.context.total == first.context.total == 6.0


def test_a_field_changed_in_place_is_hashed_again(sdk: QuantSDK) -> None:
    """d.make hits (its entry gives the frame's hash), then d.bump, which is not cached,
    adds to the frame in place: d.total's key must describe the frame as it is now. With
    the restored hash it would hit the entry of the run without the bump (total 6)."""
    assert _run(sdk, "bumped", bump=0).context.total == 6.0
    bumped = _run(sdk, "bumped", bump=100)
    assert _status(bumped) == {"d.make": "cached", "d.bump": "succeeded",
                               "d.total": "succeeded"}
    assert bumped.context.total == 106.0
    again = _run(sdk, "bumped", bump=100)
    assert _status(again)["d.total"] == "cached" and again.context.total == 106.0


def test_a_known_hash_holds_for_the_object_it_was_made_for() -> None:
    from runner.orchestration.memo import FieldDigests

    known, context = FieldDigests(), DigestContext(frame=_start())
    known.learn(context, {"frame": "f" * 64, "nosuch": "0" * 64})
    assert known.known(context) == {"frame": "f" * 64}
    context.frame = _start()  # an equal frame, another object: hashed again
    assert known.known(context) == {}
    known.learn(context, {"frame": "e" * 64, "total": "d" * 64})
    known.forget(["frame"])
    assert known.known(context) == {"total": "d" * 64}
    known.forget()
    assert known.known(context) == {}
