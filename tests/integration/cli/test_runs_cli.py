"""``runner runs list|show|prune`` and ``runner artifacts get`` in subprocesses,
on a local folder and on S3 (moto), against runs made through the SDK."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

from runner.artifacts import ArtifactStore, list_runs
from runner.artifacts.codec import sha256
from runner.artifacts.signing import sign_document
from runner.errors import StageFailedError
from runner.sdk import QuantSDK
from tests.integration.conftest import clear_s3fs_caches
from tests.integration.store_shapes import (
    StoreContext,
    stored_path,
    write_manifest,
    write_signed,
)
from tests.integration.store_shapes import index_doc as read_index
from tests.integration.store_shapes import load_entry as load_field
from tests.integration.store_shapes import run_doc as read_run

pytestmark = pytest.mark.integration

WIDE = {"COLUMNS": "250"}  # rich tables fit 80 columns otherwise, cutting names with '…'
LONG_AGO = "2000-01-01T00:00:00+00:00"


def _runs(root: Any, tmp_path: Path) -> ArtifactStore:
    """new-1 (succeeded), old-1 (succeeded), fail-1 (failed, with forensics)."""
    manifest = write_manifest(tmp_path)
    sdk = QuantSDK(manifest, artifacts=root.url, storage_options=root.storage_options)
    sdk.run_pipeline("main", StoreContext(), run_id="old-1")
    flag = tmp_path / "flag"
    flag.write_text("up")
    with pytest.raises(StageFailedError):
        sdk.run_pipeline("main", StoreContext(params={"flag": str(flag)}), run_id="fail-1")
    sdk.run_pipeline("main", StoreContext(), run_id="new-1")
    return ArtifactStore(root.url, root.storage_options)


def _age(store: ArtifactStore, run_id: str, when: str) -> None:
    doc = read_run(store, run_id)
    doc.update(started=when, ended=when, updated=when)
    write_signed(store, f"runs/{run_id}/run.json", doc)


def test_runs_and_artifacts_commands(cli_root, tmp_path, cli):
    store = _runs(cli_root, tmp_path)
    args = cli_root.cli_args()
    env = {**cli_root.env, **WIDE}

    def run(*argv: Any) -> Any:
        return cli(*argv, *args, cwd=tmp_path, env=env)

    # runs list --json: every run, newest first, as the store has them
    proc = run("runs", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert [d["run_id"] for d in listed] == ["new-1", "fail-1", "old-1"]
    assert [d["status"] for d in listed] == ["succeeded", "failed", "succeeded"]
    assert all(d["pipeline"] == "main" for d in listed)
    assert listed[0]["trace_id"] == read_run(store, "new-1")["trace_id"]

    # runs show --json: run.json plus each checkpoint's index
    proc = run("runs", "show", "new-1", "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    doc = read_run(store, "new-1")
    assert {k: v for k, v in shown.items() if k != "indexes"} == doc
    assert shown["indexes"] == [read_index(store, "new-1", c["dir"])
                                for c in doc["checkpoints"]]
    assert len(shown["indexes"]) == 7

    # the rendering is the same on every store: checked on the local one only
    full = cli_root.kind == "local"

    # runs show (text): status, the error, and where each field is stored
    if full:
        proc = run("runs", "show", "fail-1")
        assert proc.returncode == 0, proc.stderr
        text = proc.stdout
        assert "fail-1 pipeline=main status=failed attempts=1" in text
        assert "error: stage 'flaky' at main[3] failed: RuntimeError" in text
        rows = [line.split() for line in text.splitlines()]
        fields = read_index(store, "fail-1", "steps/005-pickled")["fields"]
        assert fields["run_id"] == {**fields["run_id"], "format": "value", "value": "fail-1"}
        assert ["005-pickled", "main[2]", "step", "run_id", "value", "inline"] in rows
        assert ["audit_trail", "json", str(fields["audit_trail"]["bytes"]),
                "001-load_frames"] in rows
        assert ["pair", "pickle", str(fields["pair"]["bytes"]), "here"] in rows
        assert ["feature_store", "parquet", "4", str(fields["feature_store"]["bytes"]),
                "004-merge"] in rows
        assert "006-" not in text  # flaky failed: no checkpoint

    # artifacts get: a frame rendered on stdout, by stage name
    entry = read_index(store, "new-1", "steps/007-finish")["fields"]["feature_store"]
    frame = load_field(store, "new-1", entry)
    proc = run("artifacts", "get", "new-1", "finish", "feature_store")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == frame.to_string(max_rows=40) + "\n"
    assert "px" in proc.stdout and "2024-01-04" in proc.stdout

    # ... plain data as JSON, by plan path
    if full:
        proc = run("artifacts", "get", "new-1", "main[4]", "audit_trail")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == ["frames", "finished"]

    # ... a number kept inline in the run's record (no file): as JSON, and with -o
    proc = run("artifacts", "get", "new-1", "finish", "value")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == 111
    proc = run("artifacts", "get", "new-1", "finish", "value", "-o", tmp_path / "v.json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "v.json").read_text()) == 111

    # ... -o FILE: exactly the stored bytes (here a Parquet file, referenced from step 4)
    out = tmp_path / "fs.parquet"
    proc = run("artifacts", "get", "new-1", "7", "feature_store", "-o", out)
    assert proc.returncode == 0, proc.stderr
    stored = store.read_bytes(stored_path("new-1", entry))
    merged = read_index(store, "new-1", "steps/004-merge")["fields"]["feature_store"]
    assert entry["object"] == merged["object"]  # written by step 4, referenced since
    assert out.read_bytes() == stored and sha256(stored) == entry["object"]
    assert f"wrote {out} (parquet, {len(stored)} bytes)" in proc.stderr
    assert_frame_equal(pq.read_table(out).to_pandas(), frame)

    # runs prune: finished runs that ended long ago go, with their forensics
    _age(store, "old-1", LONG_AGO)
    _age(store, "fail-1", LONG_AGO)
    running = {"run_id": "stuck-1", "pipeline": "main", "status": "running",
               "started": LONG_AGO, "ended": None, "updated": LONG_AGO}
    write_signed(store, "runs/stuck-1/run.json", running)
    assert store.exists("summaries/runs/fail-1/error_context.pkl")

    if full:
        proc = run("runs", "prune", "--older-than", "30", "--dry-run")
        assert proc.returncode == 0, proc.stderr
        assert "would delete 2 runs" in proc.stderr
        assert {"fail-1", "old-1"} <= set(proc.stderr.replace(",", " ").split())
        assert {d.run_id for d in list_runs(store)} == {"new-1", "fail-1", "old-1", "stuck-1"}

    proc = run("runs", "prune", "--older-than", "30")
    assert proc.returncode == 0, proc.stderr
    assert "deleted 2 runs" in proc.stderr
    clear_s3fs_caches()  # this process listed runs/ before: see test_list_runs_is_not_stale
    fresh = ArtifactStore(cli_root.url, cli_root.storage_options)
    assert [d.run_id for d in list_runs(fresh)] == ["new-1", "stuck-1"]
    assert not fresh.exists("runs/old-1/run.json")
    assert not fresh.exists("runs/fail-1/steps/001-load_frames/index.json")
    assert not fresh.exists("summaries/runs/fail-1/error.json")
    assert fresh.exists("runs/new-1/steps/007-finish/index.json")


def test_command_errors(tmp_path, cli):
    url = str(tmp_path / "store")
    manifest = write_manifest(tmp_path)
    QuantSDK(manifest, artifacts=url).run_pipeline("main", StoreContext(), run_id="r-1")
    store = ArtifactStore(url)
    args = ["--artifacts", url]

    proc = cli("runs", "list", *args, cwd=tmp_path, env=WIDE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].split()[:3] == ["r-1", "main", "succeeded"]

    proc = cli("runs", "show", "nope-1", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: cannot read ") and "not found" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = cli("artifacts", "get", "r-1", "nope", "value", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert "no checkpoint 'nope' in run 'r-1'; it has: 001-load_frames" in proc.stderr

    proc = cli("artifacts", "get", "r-1", "finish", "nope", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert re.search(r"checkpoint steps/007-finish has no field 'nope'( \(did you mean "
                     r"[^)]*\))?; it has: run_id", proc.stderr), proc.stderr

    # a tampered file is not handed out, neither written nor rendered
    entry = read_index(store, "r-1", "steps/007-finish")["fields"]["audit_trail"]
    store.write_bytes(stored_path("r-1", entry), b'["forged"]')
    out = tmp_path / "out.json"
    for extra in (["-o", out], []):
        proc = cli("artifacts", "get", "r-1", "finish", "audit_trail", *extra, *args,
                   cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "does not match its digest" in proc.stderr
        assert stored_path("r-1", entry) in proc.stderr
        assert "field 'audit_trail' of checkpoint steps/007-finish" in proc.stderr
        assert "forged" not in proc.stdout
    assert not out.exists()


def test_list_runs_is_not_stale(s3_root):
    store = ArtifactStore(s3_root.url, s3_root.storage_options)
    write_signed(store, "runs/mine-1/run.json",
                 {"run_id": "mine-1", "pipeline": "p", "status": "running"})
    assert [d.run_id for d in list_runs(store)] == ["mine-1"]
    # another process (its own S3 client) starts a run in the same store
    other = s3_root.server.admin()
    other.pipe_file(f"{s3_root.bucket}/prefix/runs/theirs-1/run.json",
                    json.dumps(sign_document({"run_id": "theirs-1", "pipeline": "p",
                                              "status": "running", "started": "2030-01-01"})
                               ).encode())
    again = ArtifactStore(s3_root.url, s3_root.storage_options)  # a new store, same process
    assert [d.run_id for d in list_runs(again)] == ["theirs-1", "mine-1"]
