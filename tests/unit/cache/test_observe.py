"""A stage that reads data outside its context (the file ``--data`` names) says its
version with ``@stage(observe=...)``: the step cache keys it on it, so a run after the
file was edited runs the stage again, and one on the same content takes the cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import fsspec
import pytest

from runner.cache.keys import explain, step_key
from runner.context import SelectionContext
from runner.prices import file_version
from runner.registry import StageEntry
from runner.sdk import QuantSDK
from runner.stages.contexts import DataOpsContext

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "configs" / "example_prices.csv"


def _same(context: Any) -> Any:
    return context


def test_the_key_holds_what_observe_says() -> None:
    seen = {"v": "one"}
    entry = StageEntry("t.obs", _same, reads=frozenset({"universe"}),
                       observe=lambda ctx: seen["v"])
    ctx = SelectionContext(universe=["A"])
    first = step_key(entry, ctx)
    assert step_key(entry, ctx).key == first.key
    seen["v"] = "two"
    second = step_key(entry, ctx)
    assert second.key != first.key
    assert explain(first.inputs.as_json(), second.inputs) == [
        "the data it reads outside the context changed"]
    plain = step_key(StageEntry("t.obs", _same, reads=frozenset({"universe"})), ctx)
    assert "outside" not in plain.inputs.as_json()  # the keys of other stages, unchanged
    bad = StageEntry("t.bad", _same, observe=lambda ctx: 3)
    with pytest.raises(TypeError, match="observe returned int"):
        step_key(bad, ctx)


def test_a_files_version_is_its_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("date,A\n2020-01-01,1\n")
    shutil.copy(a, b)
    assert file_version(str(a)) == file_version(str(b)) == file_version(f"file://{a}")
    before = file_version(str(a))
    a.write_text("date,A\n2020-01-01,2\n")  # the same size, another content
    assert file_version(str(a)) != before
    memory = fsspec.filesystem("memory")
    memory.pipe("/observe/p.csv", b"date,A\n2020-01-01,1\n")
    remote = file_version("memory://observe/p.csv")
    memory.pipe("/observe/p.csv", b"date,A\n2020-01-01,22\n")
    assert file_version("memory://observe/p.csv") != remote


def test_an_edited_data_file_runs_the_stage_that_reads_it(tmp_path: Path) -> None:
    data = tmp_path / "prices.csv"
    shutil.copy(EXAMPLE, data)
    sdk = QuantSDK(ROOT / "configs" / "manifest.json", artifacts=tmp_path / "store",
                   workspace_root=tmp_path / "ws")

    def run() -> dict[str, str]:
        result = sdk.run_pipeline("dataops.full", DataOpsContext(params={"data": str(data)}),
                                  cache=True, tracing=False)
        return {r.name: r.status for r in result.records}

    assert set(run().values()) == {"succeeded"}
    assert set(run().values()) == {"cached"}
    text = data.read_text().splitlines()
    data.write_text("\n".join([*text[:-1], text[-1].rsplit(",", 1)[0] + ",999.0"]) + "\n")
    assert run()["dataops.load"] == "succeeded"  # not its stale outputs
    assert set(run().values()) == {"cached"}


def test_dry_run_says_the_data_changed_and_a_missing_file_is_the_users_error(
        tmp_path: Path) -> None:
    from tests.unit.cli.test_cli import cli

    data = tmp_path / "prices.csv"
    shutil.copy(EXAMPLE, data)
    run = ["run", "dataops.full", "-m", ROOT / "configs" / "manifest.json", "--cache"]
    assert cli(*run, "--data", data, "-q", cwd=tmp_path).returncode == 0
    data.write_text(data.read_text().replace("141.801", "141.802"))
    dry = cli(*run, "--data", data, "--dry-run", cwd=tmp_path)
    assert "dataops.load  would run: the data it reads outside the context changed" in dry.stdout
    missing = cli(*run, "--data", tmp_path / "gone.csv", "--dry-run", cwd=tmp_path)
    assert missing.returncode == 2 and "gone.csv: file not found" in missing.stderr
    assert "internal error" not in missing.stderr and len(missing.stderr.splitlines()) == 1


ALIASED = '''from runner.context import SelectionContext
from runner.registry import stage


@stage("dl.fetch", cache=False, version="v2", observe=lambda ctx: "seen",
       reads=["params.n"], writes=["audit_trail"])
def fetch(ctx: SelectionContext) -> SelectionContext:
    ctx.log("fetched")
    return ctx
'''


def test_a_stage_the_manifest_names_anew_keeps_what_it_declares(tmp_path: Path) -> None:
    """A manifest's ``stages`` may give a decorated function another name: it keeps its
    cache, version and observe as well as its reads and writes."""
    (tmp_path / "dlstages.py").write_text(ALIASED, encoding="utf-8")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({
        "pipelines": {"p": {"steps": ["my.fetch"], "cache": True,
                            "context": "runner.context:SelectionContext"}},
        "stages": {"my.fetch": "dlstages:fetch"}}), encoding="utf-8")
    sdk = QuantSDK(manifest, artifacts=tmp_path / "store", workspace_root=tmp_path / "ws")
    entry = sdk.plan("p").stages[0].entry
    assert (entry.cache, entry.version, entry.params_read) == (False, "v2", {"n"})
    assert entry.observe is not None and entry.observe(None) == "seen"
    for _ in range(2):  # cache=False: it runs every time, even in a pipeline that caches
        result = sdk.run_pipeline("p", cache=None, tracing=False)
        assert [r.status for r in result.records] == ["succeeded"]
