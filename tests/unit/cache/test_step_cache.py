"""The step cache facade the engine will be handed: a miss, a fill, then a hit that
gives back what the step wrote; a stage with ``cache=False`` has no key; an entry whose
object is gone is a miss that the next fill repairs; an edited object is refused;
``explain`` says what changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from runner.artifacts.objects import object_path
from runner.artifacts.store import ArtifactStore
from runner.cache.step_cache import StepCache
from runner.context import SelectionContext
from runner.errors import IntegrityError
from runner.registry import StageEntry


def policy(context: Any) -> Any:
    return context


POLICY = StageEntry("alpha.policy", policy, reads=frozenset({"params", "universe"}))
DOWNLOAD = StageEntry("data.download", policy, cache=False)
OUTPUTS = {"signals": pd.Series([0.5, -0.5], index=["A", "B"], name="signal"),
           "regime": "calm"}


@pytest.fixture
def cache(tmp_path: Path) -> StepCache:
    return StepCache(ArtifactStore(tmp_path / "store"), runner_version="test")


def _context(x: int) -> SelectionContext:
    return SelectionContext(run_id="r", universe=["A", "B"], params={"x": x})


def test_miss_fill_hit(cache: StepCache) -> None:
    step = cache.key(POLICY, _context(1))
    assert step is not None and cache.lookup(step) is None
    assert cache.fill(step, OUTPUTS) is True
    again = cache.key(POLICY, _context(1))
    assert again == step
    hit = cache.lookup(again)
    assert hit is not None and hit.values["regime"] == "calm"
    pd.testing.assert_series_equal(hit.values["signals"], OUTPUTS["signals"])
    assert cache.fill(step, OUTPUTS) is False  # filled already
    assert cache.key(DOWNLOAD, _context(1)) is None


def test_appended_lines_are_appended_to_what_the_field_holds(cache: StepCache) -> None:
    """The audit trail a hit restores keeps the earlier steps' lines as they are in this
    run: only the step's own lines come from the cache."""
    step = cache.key(POLICY, _context(1))
    assert step is not None
    cache.fill(step, {"universe": ["A"]}, appended={"audit_trail": ["policy: 2 signals"]})
    context = _context(1)
    context.audit_trail = ["ingest: other words this time"]
    hit = cache.lookup(step)
    assert hit is not None
    hit.apply(context)
    assert context.audit_trail == ["ingest: other words this time", "policy: 2 signals"]
    assert context.universe == ["A"]


def test_a_missing_object_is_a_miss_and_the_fill_repairs_it(cache: StepCache) -> None:
    step = cache.key(POLICY, _context(1))
    assert step is not None
    cache.fill(step, OUTPUTS)
    (digest,) = cache.objects.digests()
    cache.store.delete(object_path(digest))
    assert cache.lookup(step) is None
    assert cache.fill(step, OUTPUTS) is True
    assert cache.lookup(step) is not None


def test_an_edited_object_is_refused(cache: StepCache) -> None:
    step = cache.key(POLICY, _context(1))
    assert step is not None
    cache.fill(step, OUTPUTS)
    (digest,) = cache.objects.digests()
    Path(cache.store.path(object_path(digest))).write_bytes(b"PAR1 not quite")
    with pytest.raises(IntegrityError, match=digest[2:]):
        cache.lookup(step)


def test_explain(cache: StepCache) -> None:
    first = cache.key(POLICY, _context(1))
    assert first is not None
    assert cache.explain(first) == ["never run with the cache"]
    cache.fill(first, OUTPUTS)
    assert cache.explain(first) == ["cached"]
    second = cache.key(POLICY, _context(2))
    assert second is not None and cache.explain(second) == ["input params changed"]


def test_the_cache_travels_to_a_worker(cache: StepCache) -> None:
    """A parallel branch on a worker gets the cache pickled with its task."""
    import pickle

    step = cache.key(POLICY, _context(1))
    assert step is not None
    cache.fill(step, OUTPUTS)
    there = pickle.loads(pickle.dumps(cache))
    hit = there.lookup(step)
    assert hit is not None and hit.values["regime"] == "calm"
