"""Partial runs from Python: ``run_pipeline(..., from_step=, origin=, to_step=)``."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from runner.artifacts import read_run
from runner.context import values_equal
from runner.errors import StageFailedError, UsageError
from runner.sdk import QuantSDK
from tests.unit.cli.test_cli import MANIFEST


@pytest.fixture
def sdk(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(MANIFEST))
    return QuantSDK(path, artifacts=tmp_path / "store", workspace_root=tmp_path / "ws")


def test_from_and_to_in_the_sdk(sdk):
    whole = sdk.run_pipeline("ok", run_id="whole")
    part = sdk.run_pipeline("ok", run_id="part", from_step="log.b", origin="whole")
    assert [r.name for r in part.records] == ["log.b"]
    for name, value in whole.context.__dict__.items():
        if name in ("run_id", "workspace"):
            continue
        if isinstance(value, pd.DataFrame):  # an empty frame read back from Parquet has
            # Index([]) for columns, not RangeIndex(0): the checkpoint codec's, as on resume
            pd.testing.assert_frame_equal(value, part.context.__dict__[name],
                                          check_column_type=False)
        else:
            assert values_equal(value, part.context.__dict__[name]), name
    upto = sdk.run_pipeline("ok", run_id="upto", to_step="parallel[2]")
    assert upto.records[0].name == "log.a" and upto.context.audit_trail == ["a"]
    assert "log.b" not in [r.name for r in upto.records]
    with pytest.raises(UsageError, match="no run 'gone'"):
        sdk.run_pipeline("ok", from_step="log.b", origin="gone")


FLAKY = """
from pathlib import Path

def flaky(ctx):
    if Path(__file__).with_name("fail-now").exists():
        raise RuntimeError("flaky failed")
    ctx.log("flaky")
    return ctx
"""


def test_a_run_from_a_step_stopped_before_its_first_checkpoint_resumes_from_its_origin(
        tmp_path):
    """Resumed, a --from run that failed at its first step starts from its origin's
    checkpoint again (not from the pipeline's first step), and run.json keeps saying so."""
    (tmp_path / "flaky_stage.py").write_text(FLAKY)
    doc = {"pipelines": {"fl": {"steps": ["log.a", "flaky", "log.b"],
                                "context": "tests.shapes:ShapeContext"}},
           "stages": {**MANIFEST["stages"], "flaky": "flaky_stage:flaky"}}
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    sdk = QuantSDK(tmp_path / "manifest.json", artifacts=tmp_path / "store",
                   workspace_root=tmp_path / "ws")
    sdk.run_pipeline("fl", run_id="o")
    (tmp_path / "fail-now").touch()
    with pytest.raises(StageFailedError):
        sdk.run_pipeline("fl", run_id="p", from_step="flaky", origin="o")
    (tmp_path / "fail-now").unlink()
    again = sdk.run_pipeline("fl", run_id="p", resume=True)
    assert [r.name for r in again.records] == ["flaky", "log.b"]
    assert again.context.audit_trail == ["a", "flaky", "b"]
    record = read_run(sdk.store(), "p")
    assert record.partial is not None and record.partial.origin == "o"
    assert record.partial.from_step == "fl[1]" and record.attempts == 2
