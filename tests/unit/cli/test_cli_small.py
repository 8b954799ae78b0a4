"""The small things a user notices at the command line, each through the CLI in a
subprocess, as a user runs it (issue 15, "Small things users notice")."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from runner.telemetry.logs import configure_logging
from runner.words import plural

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "configs" / "manifest.json"


def cli(*args: object, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items()
            if k not in ("RUNNER_DEBUG", "RUNNER_LOG_FORMAT", "RUNNER_MANIFEST")}
    full.update(PYTHONPATH=str(ROOT), COLUMNS="200", **(env or {}))
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], cwd=cwd,
                          env=full, capture_output=True, text=True, timeout=600, check=False)


# ---------------------------------------------------------------- --version


def test_version_prints_the_installed_packages_version(tmp_path: Path) -> None:
    proc = cli("--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"runner {version('runner')}\n"
    assert proc.stderr == ""


# ---------------------------------------------------------------- plurals


def test_counted_nouns_agree_with_their_count(tmp_path: Path) -> None:
    """Yesterday: ``1 pipelines, 1 stages``, ``deleted 1 runs``, ``1 day(s)``."""
    assert (plural(0, "run"), plural(1, "run"), plural(2, "match", "matches")) == (
        "0 runs", "1 run", "2 matches")
    assert plural(1234, "row", sep=",") == "1,234 rows"
    proc = cli("validate", "-m", MANIFEST, "--no-cache", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    spec = json.loads(MANIFEST.read_text())
    assert f": {len(spec['pipelines'])} pipelines, " in proc.stderr
    (tmp_path / "my_stages.py").write_text(OWN_STAGE)
    (tmp_path / "manifest.json").write_text(json.dumps(OWN_MANIFEST))
    proc = cli("run", "mine", "-m", "manifest.json", "--artifacts", "store", "--json",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    proc = cli("runs", "prune", "--older-than", "0", "--artifacts", "store", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first, objects = proc.stderr.strip().splitlines()
    assert first == f"deleted 1 run: {run_id}"
    assert objects.startswith("deleted 0 unreferenced objects (0 bytes); kept ")  # young


# ---------------------------------------------------------------- graph -o


def test_graph_writes_every_text_format_to_the_output_file(tmp_path: Path) -> None:
    """Yesterday: ``-o file.mmd`` was ignored, the graph went to stdout."""
    for fmt, name in (("mermaid", "dag.mmd"), ("dot", "dag.dot")):
        shown = cli("graph", "alpha.full", "-m", MANIFEST, "-f", fmt, cwd=tmp_path)
        assert shown.returncode == 0 and shown.stdout, shown.stderr
        proc = cli("graph", "alpha.full", "-m", MANIFEST, "-f", fmt, "-o", name, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ""
        assert (tmp_path / name).read_text() == shown.stdout
        assert proc.stderr.strip() == f"wrote {name}"
    proc = cli("graph", "alpha.full", "-m", MANIFEST, "-o", tmp_path / "no" / "such.mmd",
               cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: --output ") and "cannot write it" in proc.stderr


# ---------------------------------------------------------------- global options after


def test_global_options_are_accepted_after_the_command(tmp_path: Path) -> None:
    """Yesterday: ``No such option: --log-format``."""
    (tmp_path / "my_stages.py").write_text(OWN_STAGE)
    (tmp_path / "manifest.json").write_text(json.dumps(OWN_MANIFEST))
    proc = cli("run", "mine", "-m", "manifest.json", "--artifacts", "store",
               "--log-format", "json", "--log-level=DEBUG", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]  # JSON lines only
    assert "run_started" in {d.get("event") for d in lines}
    assert "DEBUG" in {d["level"] for d in lines}
    # in a nested command too, and the same as before the command
    after = cli("runs", "list", "--artifacts", "store", "--log-format", "json", cwd=tmp_path)
    before = cli("--log-format", "json", "runs", "list", "--artifacts", "store", cwd=tmp_path)
    assert after.returncode == before.returncode == 0, after.stderr
    assert after.stdout == before.stdout and "mine" in after.stdout


def test_only_the_global_options_move(tmp_path: Path) -> None:
    from runner.cli import globals_first

    assert globals_first(["run", "x", "--log-format", "json", "-q"]) == [
        "--log-format", "json", "run", "x", "-q"]
    assert globals_first(["--log-level", "INFO", "runs", "list", "--log-format=json"]) == [
        "--log-level", "INFO", "--log-format=json", "runs", "list"]
    assert globals_first(["run", "x", "--", "--log-format", "json"]) == [
        "run", "x", "--", "--log-format", "json"]
    assert globals_first(["--help"]) == ["--help"]


# ---------------------------------------------------------------- runs list, no runs


def test_runs_list_without_runs_says_where_it_looked(tmp_path: Path) -> None:
    """Yesterday: an empty table, nothing said."""
    proc = cli("runs", "list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    looked = tmp_path / "data" / "artifacts" / "runs"
    assert proc.stderr.startswith(f"no runs in {looked} (the default root data/artifacts")
    proc = cli("runs", "list", cwd=tmp_path, env={"RUNNER_ARTIFACTS": str(tmp_path / "elsewhere")})
    assert proc.stderr.startswith(f"no runs in {tmp_path / 'elsewhere' / 'runs'} "
                                  "(from RUNNER_ARTIFACTS)")
    proc = cli("runs", "list", "--artifacts", "memory://store", cwd=tmp_path)
    assert proc.stderr.startswith("no runs in memory://store/runs (from --artifacts)")
    proc = cli("runs", "list", "--json", cwd=tmp_path)  # JSON: the empty list, as before
    assert json.loads(proc.stdout) == []


# ---------------------------------------------------------------- list --json


def test_list_json_is_one_object_the_same_from_the_cache(tmp_path: Path) -> None:
    env = {"RUNNER_CACHE_DIR": str(tmp_path / "cache")}
    docs = []
    for _ in range(2):  # the full check, then the outcome it kept
        proc = cli("list", "-m", MANIFEST, "--json", cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr
        docs.append(json.loads(proc.stdout))
    assert docs[0] == docs[1]
    assert list((tmp_path / "cache").iterdir())  # the second came from the cache
    spec = json.loads(MANIFEST.read_text())["pipelines"]
    assert [p["name"] for p in docs[0]["pipelines"]] == list(spec)
    first = docs[0]["pipelines"][0]
    assert first == {"name": "alpha.full", "steps": len(spec["alpha.full"]["steps"]),
                     "context": spec["alpha.full"]["context"],
                     "description": spec["alpha.full"]["description"]}
    assert docs[0]["manifest"].endswith("manifest.json")
    table = cli("list", "-m", MANIFEST, cwd=tmp_path, env=env).stdout
    assert "alpha.full" in table and "PortfolioContext" in table


# ---------------------------------------------------------------- log lines outside a run

OWN_STAGE = "def ingest(ctx):\n    return ctx\n"
OWN_MANIFEST = {
    "pipelines": {"mine": {"context": "runner.stages.contexts:PortfolioContext",
                           "steps": ["foundation.ingest"]}},
    "stages": {"foundation.ingest": "my_stages:ingest"},
}


def test_a_note_outside_a_run_is_a_plain_note_line(tmp_path: Path) -> None:
    """Yesterday: ``WARNING runner [run_id=None trace_id=None]: note: ...``."""
    (tmp_path / "my_stages.py").write_text(OWN_STAGE)
    (tmp_path / "manifest.json").write_text(json.dumps(OWN_MANIFEST))
    proc = cli("validate", "-m", "manifest.json", "--no-cache", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "note:" in line]
    assert len(notes) == 1 and notes[0].startswith("note: manifest stages."), proc.stderr
    assert "None" not in proc.stderr and "WARNING" not in proc.stderr
    assert proc.stderr.splitlines()[-1].endswith("manifest.json: 1 pipeline, 1 stage")
    # in JSON, the note is a log line like any other, marked as a note
    proc = cli("--log-format", "json", "validate", "-m", "manifest.json", "--no-cache",
               cwd=tmp_path)
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert [d["event"] for d in lines if "note:" in d["message"]] == ["note"]


def test_a_log_line_shows_the_run_ids_only_in_a_run() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("opentelemetry").level)
    stream = io.StringIO()
    configure_logging("text", "WARNING", stream=stream)
    try:
        log = logging.getLogger("runner")
        log.warning("outside")
        log.warning("inside", extra={"run_id": "r1", "trace_id": "t1"})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("opentelemetry").setLevel(saved[2])
    assert stream.getvalue().splitlines() == [
        "WARNING runner: outside", "WARNING runner [run_id=r1 trace_id=t1]: inside"]


# ------------------------------------------------- an option given another as its value


def test_an_option_followed_by_another_option_is_refused_not_taken_as_its_value(
        tmp_path: Path) -> None:
    """``--artifacts $STORE -q`` with STORE empty: the run must not write a store into a
    folder named ``-q``."""
    proc = cli("run", "alpha.full", "--manifest", MANIFEST, "--artifacts", "-q", "--json",
               cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout)["error"].startswith(
        "Option '--artifacts' needs a value, but the option '-q' follows it")
    assert not (tmp_path / "-q").exists() and not list(tmp_path.iterdir())


def test_option_as_value_reads_the_commands_own_options() -> None:
    from typer.main import get_command

    from runner.cli.format import option_as_value
    from runner.cli.root import app

    run = get_command(app).get_command(None, "run")  # type: ignore[attr-defined]
    params = run.params
    assert option_as_value(params, ["p", "--artifacts", "-q"]) == ("--artifacts", "-q")
    assert option_as_value(params, ["p", "-m", "--json"]) == ("-m", "--json")
    assert option_as_value(params, ["p", "--artifacts=-q", "--json"]) is None  # said so
    assert option_as_value(params, ["p", "--artifacts", "-x"]) is None  # not an option
    assert option_as_value(params, ["p", "-q", "--json"]) is None  # switches take none
    assert option_as_value(params, ["p", "--", "--artifacts", "-q"]) is None
