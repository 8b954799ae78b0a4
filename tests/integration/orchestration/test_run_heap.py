"""``runner run`` freezes the heap it has loaded before the first step: a full garbage
collection during the run walks only what the run made, not the imported libraries
(whose collection would land wherever the heap happened to cross a threshold: a fixed
cost of tens of milliseconds that looked like a cost per step)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]

STAGES = '''import gc, json
from typing import Any
from pydantic import Field
from runner import Context


class HeapContext(Context):
    params: dict[str, Any] = Field(default_factory=dict)


def look(ctx):
    with open(ctx.params["out"], "w") as fh:
        json.dump({"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}, fh)
    return ctx
'''


def test_the_heap_loaded_before_the_run_is_frozen(cli, tmp_path: Path):
    (tmp_path / "heap_stages.py").write_text(STAGES)
    (tmp_path / "manifest.json").write_text(json.dumps({
        "pipelines": {"heap": {"context": "heap_stages:HeapContext", "steps": ["look"]}},
        "stages": {"look": "heap_stages:look"}}))
    out = tmp_path / "heap.json"
    proc = cli("run", "heap", "-m", "manifest.json", "--artifacts", tmp_path / "art", "-q",
               "-p", f"out={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(out.read_text())
    print(f"frozen {seen['frozen']} objects; {seen['tracked']} still tracked in the step")
    assert seen["frozen"] > seen["tracked"]  # the libraries, the manifest, the plan
