"""A hostile store: tampered, truncated, swapped and malformed files, planted modules
and traversal ids, against every command that reads the store.

Whatever the store holds: no code runs (a pickle whose ``__reduce__`` writes a
marker file; a planted module that writes one when imported), nothing exits 3,
nothing outside the root is read or deleted. The wide corpus runs in-process
(typer's CliRunner); a representative subset through real CLI subprocesses.
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from runner.artifacts import ArtifactStore, load_error_context
from runner.artifacts.codec import sha256
from runner.artifacts.journal import JournalWriter
from runner.artifacts.objects import object_path
from runner.artifacts.signing import sign_document
from runner.cli import app
from runner.errors import ArtifactError, StageFailedError, UsageError
from runner.sdk import QuantSDK
from runner.workspace import check_run_id
from tests.integration.store_shapes import Marker, StoreContext, write_manifest

pytestmark = pytest.mark.integration

RUN = "good-1"
OTHER = "other-1"
FINAL = "steps/007-finish"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, Path]:
    """A store with two succeeded runs and one failed (forensics), made once."""
    folder = tmp_path_factory.mktemp("hostile")
    manifest = write_manifest(folder)
    root = folder / "store"
    sdk = QuantSDK(manifest, artifacts=root)
    sdk.run_pipeline("main", StoreContext(), run_id=RUN)
    sdk.run_pipeline("main", StoreContext(), run_id=OTHER)
    flag = folder / "flag"
    flag.write_text("up")
    with pytest.raises(StageFailedError):
        sdk.run_pipeline("main", StoreContext(params={"flag": str(flag)}), run_id="fail-1")
    return manifest, root


@pytest.fixture
def world(pristine, tmp_path) -> dict[str, Any]:
    """A fresh copy of the store beside a victim folder and a marker path."""
    manifest, root = pristine
    store_dir = tmp_path / "root" / "store"
    shutil.copytree(root, store_dir)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "run.json").write_text("{}")
    (victim / "keep.txt").write_text("mine")
    return {"store": store_dir, "manifest": manifest, "victim": victim,
            "marker": tmp_path / "code-ran.txt", "tmp": tmp_path}


# ---------------------------------------------------------------- hostile edits


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _put(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc))


def _run_json(w: dict[str, Any]) -> Path:
    return w["store"] / "runs" / RUN / "run.json"


def _index(w: dict[str, Any], run: str = RUN, step: str = FINAL) -> Path:
    return w["store"] / "runs" / run / step / "index.json"


def _object_file(w: dict[str, Any], field: str = "pair", step: str = "steps/005-pickled"
                 ) -> Path:
    """The object holding a field of RUN's checkpoint ``step``."""
    return w["store"] / object_path(_json(_index(w, step=step))["fields"][field]["object"])


def _pickle_file(w: dict[str, Any]) -> Path:
    return _object_file(w)


def _hostile_pickle(w: dict[str, Any]) -> bytes:
    return pickle.dumps(Marker(str(w["marker"])))


def _swap_pickle_rewrite_index(w: dict[str, Any]) -> None:
    """The reported attack: a pickle replaced, the index re-pointed at it (unsigned)."""
    data = _hostile_pickle(w)
    hostile = w["store"] / object_path(sha256(data))
    hostile.parent.mkdir(parents=True, exist_ok=True)
    hostile.write_bytes(data)
    for step in ("steps/005-pickled", "steps/006-flaky", FINAL):
        path = _index(w, step=step)
        doc = _json(path)
        doc["fields"]["pair"].update(object=sha256(data), bytes=len(data))
        _put(path, doc)


def _pickle_object_swapped(w: dict[str, Any]) -> None:
    """A validly signed object of another field in place of the pickle's object (its
    name no longer matches its bytes)."""
    _pickle_file(w).write_bytes(_object_file(w, "audit_trail").read_bytes())


def _pickle_from_other_field(w: dict[str, Any]) -> None:
    """The index re-pointed at the object of another field (unsigned edit)."""
    path = _index(w)
    doc = _json(path)
    doc["fields"]["pair"]["object"] = doc["fields"]["audit_trail"]["object"]
    _put(path, doc)


def _index_from_other_run(w: dict[str, Any]) -> None:
    shutil.copy(_index(w, OTHER), _index(w))


def _index_from_other_step(w: dict[str, Any]) -> None:
    shutil.copy(_index(w, step="steps/006-flaky"), _index(w))


def _run_json_from_other_run(w: dict[str, Any]) -> None:
    shutil.copy(w["store"] / "runs" / OTHER / "run.json", _run_json(w))


def _edit_run(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(w: dict[str, Any]) -> None:
        doc = _json(_run_json(w))
        doc.update(changes)
        _put(_run_json(w), doc)
    return edit


def _edit_index(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(w: dict[str, Any]) -> None:
        doc = _json(_index(w))
        doc.update(changes)
        _put(_index(w), doc)
    return edit


def _signed_run(**changes: Any) -> Callable[[dict[str, Any]], None]:
    """Edits signed with the key: what typed validation and confinement must still stop."""
    def edit(w: dict[str, Any]) -> None:
        doc = _json(_run_json(w))
        doc.update(changes)
        _put(_run_json(w), sign_document(doc))
    return edit


def _signed_index(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(w: dict[str, Any]) -> None:
        doc = _json(_index(w))
        doc.update(changes)
        _put(_index(w), sign_document(doc))
    return edit


def _raw(target: Callable[[dict[str, Any]], Path], data: bytes
         ) -> Callable[[dict[str, Any]], None]:
    def edit(w: dict[str, Any]) -> None:
        target(w).write_bytes(data)
    return edit


def _truncate(target: Callable[[dict[str, Any]], Path]) -> Callable[[dict[str, Any]], None]:
    def edit(w: dict[str, Any]) -> None:
        path = target(w)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return edit


def _plant_module(w: dict[str, Any]) -> None:
    """A package in the store, named by an index whose signature is stripped."""
    pkg = w["store"] / "evilpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        f"open({str(w['marker'])!r}, 'w').write('imported')\nclass Ctx: pass\n")
    doc = _json(_index(w))
    doc["context_type"] = "evilpkg:Ctx"
    _put(_index(w), doc)


def _plant_module_signed(w: dict[str, Any]) -> None:
    """Even a validly signed index cannot make the reader import a module (the run
    marked failed, so ``--resume`` loads that checkpoint rather than saying it is done)."""
    _plant_module(w)
    _put(_index(w), sign_document(_json(_index(w))))
    _signed_run(status="failed")(w)


def _unknown_context_type(w: dict[str, Any]) -> None:
    _signed_index(context_type="os:system")(w)
    _signed_run(status="failed")(w)


def _journal(tamper: Callable[[list[bytes]], None]) -> Callable[[dict[str, Any]], None]:
    """RUN as if killed mid-run (its last checkpoints only in its journal), then the
    journal's lines edited."""
    def edit(w: dict[str, Any]) -> None:
        doc = _json(_run_json(w))
        writer = JournalWriter(ArtifactStore(w["store"]), RUN)
        writer.start()
        writer.append(doc["checkpoints"][2:])
        doc.update(status="failed", journal=writer.nonce, checkpoints=doc["checkpoints"][:2],
                   completed=doc["completed"][:2])
        _put(_run_json(w), sign_document(doc))
        path = w["store"] / "runs" / RUN / "journal.jsonl"
        lines = path.read_bytes().split(b"\n")
        tamper(lines)
        path.write_bytes(b"\n".join(lines))
    return edit


def _edit_line(lines: list[bytes]) -> None:
    lines[-2] = lines[-2].replace(b"steps/", b"steps/../../../victim/")


def _drop_line(lines: list[bytes]) -> None:
    del lines[1]


def _garble_line(lines: list[bytes]) -> None:
    lines[1] = b"[" * 100_000


BIG = int("9" * 4000)

CORPUS: dict[str, Callable[[dict[str, Any]], None]] = {
    "pickle swapped, sha256 rewritten": _swap_pickle_rewrite_index,
    "object swapped for another object": _pickle_object_swapped,
    "index pointed at another field's object": _pickle_from_other_field,
    "index from another run": _index_from_other_run,
    "index from another step": _index_from_other_step,
    "run.json from another run": _run_json_from_other_run,
    "run.json edited (status)": _edit_run(status="failed"),
    "index edited (sha256 of a field)": _edit_index(context_type="builtins:dict"),
    "signature stripped": _edit_run(signature=None),
    "truncated pickle": _truncate(_pickle_file),
    "truncated index": _truncate(_index),
    "truncated run.json": _truncate(_run_json),
    "planted module (unsigned index)": _plant_module,
    "planted module (signed index)": _plant_module_signed,
    "checkpoints is a string": _signed_run(checkpoints="x"),
    "checkpoint dir traverses": _signed_run(checkpoints=[
        {"seq": 1, "dir": "../../../victim", "name": "x", "path": "x", "kind": "step"}]),
    "checkpoint dir absolute": _signed_run(checkpoints=[
        {"seq": 1, "dir": "/etc", "name": "x", "path": "x", "kind": "step"}]),
    "field file traverses": _signed_index(fields={"pair": {
        "file": "../other-1/steps/005-pickled/pair.pkl", "format": "pickle",
        "sha256": "0" * 64, "bytes": 1}}),
    "field file of another run (absolute)": _signed_index(fields={"pair": {
        "file": "/tmp/x.pkl", "format": "pickle", "sha256": "0" * 64, "bytes": 1}}),
    "field object traverses": _signed_index(fields={"pair": {
        "object": "../../runs/other-1/steps/005-pickled/pair", "format": "pickle",
        "bytes": 1}}),
    "status unknown": _signed_run(status="owned"),
    "attempts a string": _signed_run(attempts="1"),
    "attempts huge": _signed_run(attempts=BIG),
    "run_id of a victim": _signed_run(run_id="../../victim"),
    "fields a list": _signed_index(fields=[1, 2]),
    "field format unknown": _signed_index(fields={"pair": {
        "file": "steps/007-finish/pair.pkl", "format": "exec", "sha256": "0" * 64,
        "bytes": 1}}),
    "context type unknown": _unknown_context_type,
    "run.json not an object": _raw(_run_json, b"[1, 2, 3]"),
    "run.json null": _raw(_run_json, b"null"),
    "run.json not JSON": _raw(_run_json, b"{nope"),
    "run.json not UTF-8": _raw(_run_json, b"\xff\xfe{}"),
    "run.json 5000 digits": _raw(_run_json, b'{"attempts": ' + b"9" * 5000 + b"}"),
    "run.json nested deep": _raw(_run_json, b"[" * 100_000 + b"]" * 100_000),
    "run.json empty": _raw(_run_json, b""),
    "index not an object": _raw(_index, b'"x"'),
    "journal line edited": _journal(_edit_line),
    "journal line dropped": _journal(_drop_line),
    "journal line nested deep": _journal(_garble_line),
}


# ---------------------------------------------------------------- commands


def _commands(w: dict[str, Any]) -> list[list[str]]:
    root = ["--artifacts", str(w["store"])]
    out = str(w["tmp"] / "out.bin")
    return [
        ["runs", "list", *root], ["runs", "list", "--json", *root],
        ["runs", "show", RUN, *root], ["runs", "show", RUN, "--json", *root],
        ["artifacts", "get", RUN, "finish", "pair", *root],
        ["artifacts", "get", RUN, "pickled", "pair", *root],
        ["artifacts", "get", RUN, "finish", "pair", "-o", out, *root],
        ["report", RUN, "-o", str(w["tmp"] / "r.html"), *root],
        ["trace", RUN, *root],
        ["run", "main", "-m", str(w["manifest"]), "--run-id", RUN, "--resume", "-q", *root],
        ["runs", "prune", "--older-than", "0", *root],
    ]


def _outside_untouched(w: dict[str, Any]) -> None:
    assert (w["victim"] / "keep.txt").read_text() == "mine"
    assert not w["marker"].exists(), "code from the store ran"


runner_ = CliRunner()


def _invoke(argv: list[str]) -> Any:
    return runner_.invoke(app, argv, catch_exceptions=True)


@pytest.mark.parametrize("case", list(CORPUS))
def test_hostile_store_never_runs_code_nor_exits_3(world, case, monkeypatch):
    monkeypatch.syspath_prepend(str(world["store"]))  # as if the store were importable
    CORPUS[case](world)
    refused = 0
    for argv in _commands(world):
        result = _invoke(argv)
        where = f"{case}: runner {' '.join(argv[:3])}"
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            pytest.fail(f"{where}: raised {type(result.exception).__name__}: "
                        f"{result.exception}")
        assert result.exit_code in (0, 1, 2), (where, result.exit_code, result.output)
        assert "Traceback" not in result.output, where
        refused += result.exit_code == 2
        _outside_untouched(world)
    assert refused, f"{case}: no command refused the hostile store"


def test_forensics_pickle_is_bound_to_its_run(world):
    folder = world["store"] / "summaries/runs"
    good = folder / "fail-1" / "error_context.pkl"
    assert load_error_context(str(good)).value == 1
    # copied under another run id: refused
    (folder / "copy-1").mkdir()
    shutil.copy(good, folder / "copy-1" / "error_context.pkl")
    with pytest.raises(ArtifactError, match="does not verify"):
        load_error_context(str(folder / "copy-1" / "error_context.pkl"))
    # replaced by a hostile plain pickle: refused, never unpickled
    good.write_bytes(_hostile_pickle(world))
    with pytest.raises(ArtifactError, match="not a signed pickle"):
        load_error_context(str(good))
    assert not world["marker"].exists()
    load_error_context(str(good), allow_unsigned=True)  # the control: it would have run
    assert world["marker"].exists()


def test_prune_deletes_only_folders_it_listed(world):
    """run.json naming ``../../victim`` (even validly signed) cannot steer the delete."""
    doc = _json(_run_json(world))
    doc.update(run_id="../../victim", ended="2000-01-01T00:00:00+00:00")
    _put(_run_json(world), sign_document(doc))
    stray = world["store"] / "runs" / "Bad..Name"
    stray.mkdir()
    result = _invoke(["runs", "prune", "--older-than", "0", "--artifacts",
                      str(world["store"])])
    assert result.exit_code == 0, result.output
    _outside_untouched(world)
    assert stray.exists()  # not a run id: listed never, deleted never


@pytest.mark.parametrize("bad", ["../../victim", "../x", "good-1\n", "/etc", "a/b", ".."])
def test_traversal_ids_are_refused(world, bad):
    root = ["--artifacts", str(world["store"])]
    for argv in (["runs", "show", bad, *root], ["artifacts", "get", bad, "1", "pair", *root],
                 ["report", bad, "-o", str(world["tmp"] / "r.html"), *root],
                 ["trace", bad, *root]):
        result = _invoke(argv)
        assert result.exit_code == 2, (argv, result.output)
        assert "invalid run id" in result.output
    _outside_untouched(world)
    with pytest.raises(UsageError):
        check_run_id(bad)


def test_allow_unsigned_reads_an_old_store_with_a_warning(world):
    _edit_run(signature=None)(world)
    root = ["--artifacts", str(world["store"])]
    assert _invoke(["runs", "show", RUN, *root]).exit_code == 2
    result = _invoke(["runs", "show", RUN, "--allow-unsigned", *root])
    assert result.exit_code == 0, result.output
    assert "is not signed; reading it anyway" in result.output


# ---------------------------------------------------------------- real subprocesses


@pytest.mark.parametrize("case", ["pickle swapped, sha256 rewritten",
                                  "planted module (signed index)",
                                  "checkpoints is a string"])
def test_hostile_store_in_subprocesses(world, case, cli):
    _signed_run(status="failed")(world)  # so --resume loads the checkpoint (a retried pod)
    CORPUS[case](world)
    codes = {}
    for argv in _commands(world):
        proc = cli(*argv, cwd=world["tmp"])
        assert proc.returncode in (0, 1, 2), (case, argv, proc.returncode, proc.stderr)
        assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
        _outside_untouched(world)
        codes[" ".join(argv[:2])] = proc.returncode
    # what loads the whole checkpoint (a retried pod's --resume) refuses it, in one line
    assert codes["run main"] == 2, codes


def test_planted_modules_in_the_current_folder_are_not_imported(world, cli):
    """``scipy.py`` in the current folder and a package under data/artifacts never run;
    the stage module beside the manifest (in another folder) is found."""
    cwd, proj = world["tmp"] / "work", world["tmp"] / "proj"
    cwd.mkdir()
    proj.mkdir()
    (cwd / "scipy.py").write_text(f"open({str(world['marker'])!r}, 'w').write('scipy')\n")
    planted = cwd / "data" / "artifacts" / "evilpkg"
    planted.mkdir(parents=True)
    (planted / "__init__.py").write_text(f"open({str(world['marker'])!r}, 'w').write('e')\n")
    (proj / "my_scipy_stage.py").write_text(
        "def go(ctx):\n    import scipy.special\n    ctx.log(str(scipy.special.expit(0.0)))\n"
        "    return ctx\n")
    (proj / "demo.json").write_text(json.dumps({
        "pipelines": {"demo": {"steps": ["go"]}}, "stages": {"go": "my_scipy_stage:go"}}))
    proc = cli("run", "demo", "-m", "../proj/demo.json", "--run-id", "fresh-1", "-q",
               cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert not world["marker"].exists()
