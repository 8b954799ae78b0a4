"""The garbage collector is off while a command starts and on wherever stages run:
in the driver, in worker processes forked from it, and for every other command."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.cli import startup_gc

ROOT = Path(__file__).resolve().parents[3]

PROBE_STAGES = '''
import gc, os, uuid
def probe(ctx):
    folder = os.environ["GC_PROBE"]
    with open(os.path.join(folder, f"{os.getpid()}-{uuid.uuid4().hex}"), "w") as fh:
        fh.write("on" if gc.isenabled() else "off")
    return ctx
'''
PROBE_MANIFEST = {
    "pipelines": {"probe": {
        "context": "runner.stages.contexts:PortfolioContext",
        "steps": ["probe.first", ["probe.left", "probe.right"], "probe.last"]}},
    "stages": dict.fromkeys(("probe.first", "probe.left", "probe.right", "probe.last"),
                            "gc_stages:probe"),
}


@pytest.fixture
def restored() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    startup_gc._state["paused"] = False
    gc.enable() if enabled else gc.disable()
    gc.unfreeze()


def test_pause_and_resume(restored: None) -> None:
    gc.enable()
    startup_gc.pause()
    assert not gc.isenabled() and startup_gc.paused()
    startup_gc.pause()  # twice: still paused, resumed once
    gc.unfreeze()
    startup_gc.resume()
    assert gc.isenabled() and not startup_gc.paused()
    assert gc.get_freeze_count() > 0  # what start-up loaded is frozen
    startup_gc.resume()
    assert gc.isenabled()


def test_resume_leaves_a_collector_someone_else_turned_off(restored: None) -> None:
    gc.disable()
    startup_gc.pause()
    assert not startup_gc.paused()
    startup_gc.resume()
    assert not gc.isenabled()


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_", "TV_ORCH"))}
    env.update(PYTHONPATH=str(ROOT), GC_PROBE=str(tmp_path / "seen"))
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_stages_run_with_the_collector_on(tmp_path: Path, executor: str) -> None:
    (tmp_path / "gc_stages.py").write_text(PROBE_STAGES)
    (tmp_path / "manifest.json").write_text(json.dumps(PROBE_MANIFEST))
    (tmp_path / "seen").mkdir()
    proc = _cli(tmp_path, "run", "probe", "-m", "manifest.json", "--artifacts", "store",
                "-e", executor, "-q")
    assert proc.returncode == 0, proc.stderr
    seen = {p.name: p.read_text() for p in (tmp_path / "seen").iterdir()}
    assert len(seen) == 4, seen
    assert set(seen.values()) == {"on"}, seen
    if executor == "processes":  # the branches ran in other processes, forked from it
        assert len({name.split("-")[0] for name in seen}) > 1, seen


def test_other_commands_work_with_the_collector_on(tmp_path: Path) -> None:
    """A command other than ``run`` gets the collector back before its own work: here
    ``validate`` importing the user's stage module (which notes what it sees)."""
    (tmp_path / "gc_stages.py").write_text(
        PROBE_STAGES + "\nwith open('imported', 'w') as fh:\n"
        "    fh.write('on' if gc.isenabled() else 'off')\n")
    (tmp_path / "manifest.json").write_text(json.dumps(PROBE_MANIFEST))
    proc = _cli(tmp_path, "validate", "-m", "manifest.json", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "imported").read_text() == "on"
