"""The step cache on the command line (real subprocesses): ``run --dry-run [--cache]``
says what would run and why, writing nothing; ``cache list`` and ``cache clear`` show
and delete entries. Entries are filled here as the engine fills them (a key on the
context the step receives, the step's outputs) through the same StepCache."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from runner.artifacts import ArtifactStore
from runner.artifacts.signing import canonical_json
from runner.cache.entries import write_entry
from runner.cache.keys import StepKey
from runner.cache.step_cache import StepCache
from runner.context import fork_context
from runner.digest import sha256
from runner.sdk import QuantSDK
from tests.unit.cli.test_cli import MANIFEST, cli

CACHED = {**MANIFEST, "pipelines": {
    **MANIFEST["pipelines"],
    "two": {"steps": ["log.a", "log.b"], "context": "tests.shapes:ShapeContext"},
}}


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(CACHED))
    return path


def fill_first_step(root: Path, manifest: Path, pipeline: str, *, store_url: str | None = None,
                    storage_options: dict | None = None) -> StepCache:
    """Fill the entry of the pipeline's first stage run on its default root context."""
    plan = QuantSDK(manifest).plan(pipeline)
    store = ArtifactStore(store_url or str(root / "data/artifacts"), storage_options or {})
    cache = StepCache(store, runner_version="test")
    first = plan.stages[0]
    context = plan.context_type()
    key = cache.key(first.entry, context)
    done = first.entry.fn(fork_context(context))
    cache.fill(key, {}, appended={"audit_trail": done.audit_trail[len(context.audit_trail):]})
    return cache


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_dry_run_lists_the_steps_and_writes_nothing(manifest, tmp_path):
    before = files(tmp_path)
    proc = cli("run", "ok", "-m", manifest, "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[1] for line in proc.stdout.splitlines()] == [
        "log.a", "add.x", "add.y", "log.b"]
    assert "4 of 4 steps would run; nothing ran, no run was written" in proc.stderr
    proc = cli("run", "ok", "-m", manifest, "--dry-run", "--json", "--to", "parallel[2]",
               cwd=tmp_path)
    doc = json.loads(proc.stdout)
    assert doc["dry_run"] is True and doc["cache"] is False
    assert [s["name"] for s in doc["steps"]] == ["log.a", "add.x", "add.y"]
    assert files(tmp_path) == before  # no store, no run, no workspace


def test_dry_run_with_the_cache_says_what_hits_and_why_the_rest_would_run(manifest, tmp_path):
    fill_first_step(tmp_path, manifest, "ok")
    before = files(tmp_path)
    proc = cli("run", "ok", "-m", manifest, "--dry-run", "--cache", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    steps = {s["name"]: s for s in json.loads(proc.stdout)["steps"]}
    assert steps["log.a"]["status"] == "cached"
    assert steps["add.x"]["status"] == "would run"
    assert steps["add.x"]["reasons"] == ["never run with the cache"]
    assert steps["add.x"]["branch"] == "ok[1][0]"
    reasons = " ".join(steps["log.b"]["reasons"])
    assert "recomputed by add." in reasons and "feature_store" in reasons
    assert files(tmp_path) == before
    text = cli("run", "ok", "-m", manifest, "--dry-run", "--cache", cwd=tmp_path)
    assert "ok[0]  log.a  cached" in text.stdout
    assert "3 of 4 steps would run, 1 cached" in text.stderr


def test_dry_run_says_which_code_changed(manifest, tmp_path):
    cache = fill_first_step(tmp_path, manifest, "two")
    plan = QuantSDK(manifest).plan("two")
    second = plan.main_line()[1]
    restored = cache.lookup(cache.key(plan.main_line()[0].entry, plan.context_type()))
    context = restored.apply(plan.context_type())
    now = cache.key(second.entry, context)
    old = replace(now.inputs, code="explicit:an-older-version")
    write_entry(cache.store, StepKey(sha256(canonical_json(old.as_json())), old), {},
                runner_version="test")
    proc = cli("run", "two", "-m", manifest, "--dry-run", "--cache", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "two[1]  log.b  would run: its code changed" in proc.stdout


def test_cache_list_and_clear(manifest, tmp_path):
    empty = cli("cache", "list", cwd=tmp_path)
    assert empty.returncode == 0 and "no step-cache entries in" in empty.stderr
    assert json.loads(cli("cache", "list", "--json", cwd=tmp_path).stdout)["entries"] == []
    fill_first_step(tmp_path, manifest, "ok")
    fill_first_step(tmp_path, manifest, "boom")  # log.a again: the same key, filled once
    fill_first_step(tmp_path, manifest, "clash")  # value.1
    listed = json.loads(cli("cache", "list", "--json", cwd=tmp_path).stdout)["entries"]
    assert sorted(e["stage"] for e in listed) == ["log.a", "value.1"]
    assert all(e["runner_version"] == "test" and len(e["key"]) == 64 for e in listed)
    text = cli("cache", "list", "--stage", "log.a", cwd=tmp_path)
    assert "log.a" in text.stdout and "value.1" not in text.stdout
    assert "1 entry" in text.stderr
    refused = cli("cache", "clear", "--stage", "log.a", cwd=tmp_path)
    assert refused.returncode == 2 and "add --yes" in refused.stderr
    assert cli("cache", "clear", cwd=tmp_path).returncode == 2  # --stage or --all
    dry = cli("cache", "clear", "--all", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "would delete 2 entries" in dry.stderr
    gone = cli("cache", "clear", "--stage", "log.a", "--yes", "--json", cwd=tmp_path)
    assert gone.returncode == 0, gone.stderr
    assert [p.split("/")[2] for p in json.loads(gone.stdout)["deleted"]] == ["log.a"]
    left = json.loads(cli("cache", "list", "--json", cwd=tmp_path).stdout)["entries"]
    assert [e["stage"] for e in left] == ["value.1"]


def test_cache_clear_sweeps_the_objects_only_the_cleared_entries_named(manifest, tmp_path):
    store = ArtifactStore(str(tmp_path / "data/artifacts"), {})
    cache = StepCache(store, runner_version="test")
    digests = {}
    for pipeline, payload in (("ok", list(range(2000))), ("clash", list(range(3000)))):
        plan = QuantSDK(manifest).plan(pipeline)
        entry = plan.stages[0].entry
        cache.fill(cache.key(entry, plan.context_type()), {"payload": payload})
        digests[entry.name] = {d for e in cache_entries(store, entry.name) for d in e}
    assert all(len(found) == 1 for found in digests.values())  # one object per entry
    (kept,), (cleared,) = digests["value.1"], digests["log.a"]
    young = cli("cache", "clear", "--stage", "log.a", "--yes", "--dry-run", cwd=tmp_path)
    assert "would delete 0 unreferenced objects" in young.stderr  # within the grace
    dry = cli("cache", "clear", "--stage", "log.a", "--dry-run", "--grace", "0", "--json",
              cwd=tmp_path)
    assert json.loads(dry.stdout)["objects_deleted"] == 1
    assert cache.objects.exists(cleared)  # a dry run deletes nothing
    done = cli("cache", "clear", "--stage", "log.a", "--yes", "--grace", "0", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "deleted 1 unreferenced object" in done.stderr
    assert not cache.objects.exists(cleared) and cache.objects.exists(kept)


def cache_entries(store: ArtifactStore, stage: str) -> list[set[str]]:
    from runner.cache.entries import list_entries

    return [e.doc.objects() for e in list_entries(store, stage=stage) if e.doc is not None]


def _statuses(proc) -> dict[str, str]:
    assert proc.returncode == 0, proc.stderr
    return {s["path"]: s["status"] for s in json.loads(proc.stdout)["steps"]
            if s["kind"] == "stage"}


def test_run_with_the_cache_hits_on_the_second_run_and_dry_run_agrees(manifest, tmp_path):
    assert cli("cache", "list", "--json", cwd=tmp_path).returncode == 0
    off = _statuses(cli("run", "ok", "-m", manifest, "--json", "--no-cache", cwd=tmp_path))
    assert set(off.values()) == {"succeeded"}
    empty = json.loads(cli("cache", "list", "--json", cwd=tmp_path).stdout)["entries"]
    assert empty == []  # --no-cache fills nothing
    first = _statuses(cli("run", "ok", "-m", manifest, "--json", "--cache", cwd=tmp_path))
    assert set(first.values()) == {"succeeded"}
    dry = cli("run", "ok", "-m", manifest, "--dry-run", "--cache", "--json", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    outlook = json.loads(dry.stdout)
    assert outlook["would_run"] == 0
    assert {s["path"]: s["status"] for s in outlook["steps"]} == dict.fromkeys(first, "cached")
    second = cli("run", "ok", "-m", manifest, "--json", "--cache", "--run-id", "again",
                 cwd=tmp_path)
    assert set(_statuses(second).values()) == {"cached"} and second.stderr.count("cached")
    run_doc = json.loads((tmp_path / "data/artifacts/runs/again/run.json").read_text())
    assert {c["path"] for c in run_doc["checkpoints"] if c.get("cached")} >= {
        p for p in first if "[" in p and p.count("[") == 1}
    # a run from a later step with the cache: the origin's context, the rest cached
    later = cli("run", "ok", "-m", manifest, "--json", "--cache", "--from", "log.b",
                "--origin", "again", cwd=tmp_path)
    assert set(_statuses(later).values()) == {"cached"}


@pytest.mark.parametrize("damaged", ["log.a", "add.x"])  # the main line; a parallel branch
def test_a_damaged_entry_is_the_stores_error_and_clearing_its_stage_mends_it(
        manifest, tmp_path, damaged):
    """An entry that does not verify fails the run as the store's integrity (exit 2, one
    line naming the file and the way on), not as the stage's failure (exit 1, the
    stage's line, forensics); ``cache clear --stage`` deletes it although it cannot be
    read, and the next run fills it again."""
    assert cli("run", "ok", "-m", manifest, "-q", "--cache", cwd=tmp_path).returncode == 0
    root = tmp_path / "data/artifacts"
    (entry,) = (root / "cache/steps" / damaged).glob("*.json")
    entry.write_bytes(entry.read_bytes()[:-20])  # cut short: not JSON any more
    proc = cli("run", "ok", "-m", manifest, "-q", "--cache", "--run-id", "damaged",
               cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and f"{damaged}/{entry.name}: not valid JSON" in line
    assert f"runner cache clear --stage {damaged} removes its entries" in line
    assert "Traceback" not in proc.stderr and " at " not in line.split(".json")[0]
    assert not (root / "summaries/runs/damaged").exists()  # no stage failed: no forensics
    assert json.loads((root / "runs/damaged/run.json").read_text())["status"] == "failed"
    assert cli("cache", "clear", "--stage", damaged, "--yes", cwd=tmp_path).returncode == 0
    assert not entry.exists()
    again = _statuses(cli("run", "ok", "-m", manifest, "--json", "--cache", cwd=tmp_path))
    ran = {p for p, status in again.items() if status == "succeeded"}
    assert len(ran) == 1 and entry.exists()  # the damaged step alone ran, and filled it
