"""results.json: written at the end of a succeeded run on every store (local folder,
fsspec memory, S3 through moto), listed in the signed run.json with its sha256,
and read back as untrusted data (a changed or malformed file gives a note)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.artifacts import ArtifactStore, read_run
from runner.artifacts.results import read_results
from runner.errors import StageFailedError
from runner.sdk import QuantSDK
from tests.integration.store_shapes import StoreContext, write_manifest, write_signed
from tests.integration.store_shapes import run_doc as read_run_doc

pytestmark = pytest.mark.integration


def _sdk(store_root, tmp_path: Path) -> QuantSDK:
    return QuantSDK(write_manifest(tmp_path), artifacts=store_root.url,
                    storage_options=store_root.storage_options)


def _results(store: ArtifactStore, run_id: str):
    doc = read_run(store, run_id)
    assert doc.results is not None, "run.json does not list results.json"
    return read_results(store, run_id, doc.results.model_dump())


def test_a_succeeded_run_writes_its_results(store_root, tmp_path):
    _sdk(store_root, tmp_path).run_pipeline("main", StoreContext(), run_id="r-1",
                                            executor="threads")
    store = ArtifactStore(store_root.url, store_root.storage_options)
    assert read_run(store, "r-1").results.file == "results.json"
    doc, note = _results(store, "r-1")
    assert note is None
    assert doc["report"] is None  # StoreContext has no report()
    steps = {m["step"]: m["messages"] for m in doc["messages"]}
    assert steps == {"load_frames": ["frames"], "finish": ["finished"]}
    fields = {f["name"]: f for f in doc["fields"]}
    frame = fields["feature_store"]
    assert frame["type"] == "DataFrame" and frame["shape"] == [4, 6]
    assert frame["head"]["columns"][:2] == ["px", "qty"]
    assert frame["head"]["rows"][0][:3] == ["2024-01-01", "100.5", "10"]
    assert fields["value"] == {"name": "value", "type": "int", "value": "111"}
    assert fields["pair"]["value"].startswith("('alpha', 1")


def test_a_resumed_run_gives_earlier_messages_to_the_earlier_attempt(store_root, tmp_path):
    sdk = _sdk(store_root, tmp_path)
    flag = tmp_path / "flag"
    flag.write_text("up")
    with pytest.raises(StageFailedError):
        sdk.run_pipeline("main", StoreContext(params={"flag": str(flag)}), run_id="r-2")
    store = ArtifactStore(store_root.url, store_root.storage_options)
    assert read_run(store, "r-2").results is None  # a failed run has none
    assert not store.exists("runs/r-2/results.json")
    flag.unlink()
    sdk.run_pipeline("main", StoreContext(params={"flag": str(flag)}), run_id="r-2",
                     resume=True)
    doc, note = _results(store, "r-2")
    assert note is None
    assert [(m["step"], m["messages"]) for m in doc["messages"]] == [
        ("(earlier attempt)", ["frames"]), ("finish", ["finished"])]


def test_a_changed_or_malformed_results_file_gives_a_note(store_root, tmp_path):
    _sdk(store_root, tmp_path).run_pipeline("main", StoreContext(), run_id="r-3")
    store = ArtifactStore(store_root.url, store_root.storage_options)
    good = store.read_bytes("runs/r-3/results.json")

    store.write_bytes("runs/r-3/results.json", good.replace(b"finished", b"FINISHED"))
    doc, note = _results(store, "r-3")
    assert doc is None and "does not match the sha256 run.json lists" in note

    # a key holder lists a file that is not a results document: refused all the same
    for data, says in ((b"{not json", "is not JSON"),
                       (b'{"format": 99}', "not a results document of format 1"),
                       (b"[1, 2]", "not a results document")):
        from runner.artifacts.codec import sha256

        store.write_bytes("runs/r-3/results.json", data)
        run = read_run_doc(store, "r-3")
        run["results"] = {"file": "results.json", "sha256": sha256(data), "bytes": len(data)}
        write_signed(store, "runs/r-3/run.json", run)
        doc, note = _results(store, "r-3")
        assert doc is None and says in note, note

    store.delete("runs/r-3/results.json")
    doc, note = _results(store, "r-3")
    assert doc is None and "not readable" in note


def test_runner_report_shows_the_results_and_a_note_for_a_bad_file(cli_root, tmp_path, cli):
    QuantSDK(write_manifest(tmp_path), artifacts=cli_root.url,
             storage_options=cli_root.storage_options).run_pipeline(
        "main", StoreContext(), run_id="r-4")
    out = tmp_path / "r-4.html"
    proc = cli("report", "r-4", "-o", out, *cli_root.cli_args(), cwd=tmp_path, env=cli_root.env)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert '<section id="results">' in page and "finished" in page
    assert "<code>feature_store</code>" in page

    store = ArtifactStore(cli_root.url, cli_root.storage_options)
    store.write_bytes("runs/r-4/results.json", json.dumps({"format": 1}).encode())
    proc = cli("report", "r-4", "-o", out, *cli_root.cli_args(), cwd=tmp_path, env=cli_root.env)
    assert proc.returncode == 0, proc.stderr  # the report, without the results
    page = out.read_text()
    assert "does not match the sha256 run.json lists" in page
    assert "<code>feature_store</code>" not in page and 'id="dag"' in page


def test_an_oversized_results_file_is_not_read_whole(store_root, tmp_path, monkeypatch):
    from runner.artifacts import results

    _sdk(store_root, tmp_path).run_pipeline("main", StoreContext(), run_id="r-5")
    store = ArtifactStore(store_root.url, store_root.storage_options)
    monkeypatch.setattr(results, "MAX_BYTES", 100)
    doc, note = _results(store, "r-5")
    assert doc is None and "is larger than 100 bytes: not shown" in note
