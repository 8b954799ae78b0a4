"""The ``runner/cli/`` package: one error printer for every command, ``KEY=VALUE``
parsed once, the options object behind ``run``, ``submit`` and ``schedule``, and a
``TRACEPARENT`` that is checked before it reaches a pod (issue 16 §4)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli.parsing import key_values, params
from runner.errors import EXIT_CODES, RunnerError, UsageError
from runner.retry import env_flag

ROOT = Path(__file__).resolve().parents[3]


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_", "TRACEPARENT"))}
    full.update({"PYTHONPATH": str(ROOT), "OTEL_SDK_DISABLED": "true", **(env or {})})
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=120, check=False)


def test_key_values_are_parsed_in_one_place_with_the_option_named() -> None:
    assert key_values(["a=1", "b=x=y", "c="], option="--env") == {"a": "1", "b": "x=y", "c": ""}
    assert params(["n=3", "w=[1, 2]", "s=text"]) == {"n": 3, "w": [1, 2], "s": "text"}
    for bad in ("novalue", "=1"):
        with pytest.raises(UsageError, match=f"--storage-option '{bad}': expected KEY=VALUE"):
            key_values([bad], option="--storage-option")


def test_storage_options_are_fsspec_options() -> None:
    from runner.cli.parsing import storage_options

    assert storage_options(["anon=true", "endpoint_url=http://h:9000", "x=False"]) == {
        "anon": True, "client_kwargs": {"endpoint_url": "http://h:9000"}, "x": False}


@pytest.mark.parametrize(("value", "on"), [("1", True), (" TRUE ", True), ("on", True),
                                           ("yes", True), ("0", False), ("", False),
                                           ("no", False)])
def test_env_flag(monkeypatch: pytest.MonkeyPatch, value: str, on: bool) -> None:
    monkeypatch.setenv("RUNNER_TEST_FLAG", value)
    assert env_flag("RUNNER_TEST_FLAG") is on


def test_every_option_of_an_options_command_is_a_field() -> None:
    """``run``, ``submit`` and ``schedule`` take one options object: the command's
    parameters are its fields (schedule without the ones only submit offers), the
    argument first."""
    from runner.cli import kube, run
    from runner.cli.format import RunnerTyper
    from runner.cli.kube.options import ScheduleOptions, SubmitOptions
    from runner.cli.run import RunOptions

    app = RunnerTyper()  # the commands as their modules register them (runner.cli.lazy)
    run.register(app)
    kube.register(app)
    commands = {c.callback.__name__: c.callback for c in app.registered_commands}
    for name, options in (("run", RunOptions), ("submit", SubmitOptions),
                          ("schedule", ScheduleOptions)):
        signature = inspect.signature(commands[name])
        fields = set(options.field_names()) - set(options.HIDDEN)
        assert set(signature.parameters) == fields, name
        assert next(iter(signature.parameters)) == "pipeline"
    assert "parallel" not in inspect.signature(commands["schedule"]).parameters


def test_a_command_given_options_calls_its_handler_with_one_object() -> None:
    from runner.cli.options import Options, options_command

    class Opts(Options):
        name: str
        count: int = 2

    seen: list[Opts] = []

    def handle(options: Opts) -> None:
        """Say hello."""
        seen.append(options)

    command = options_command(Opts, handle)
    command(name="x", count=3)
    assert seen == [Opts(name="x", count=3)]
    assert command.__doc__ == "Say hello." and command.__name__ == "handle"
    command(name="y")
    assert seen[-1].count == 2 and seen[-1].name == "y"
    with pytest.raises(AttributeError, match="immutable"):
        seen[-1].count = 3
    with pytest.raises(TypeError, match="missing"):
        Opts()
    assert [p.name for p in inspect.signature(command).parameters.values()] == ["name", "count"]


def test_a_store_error_with_json_logs_is_one_json_line(tmp_path: Path) -> None:
    """Every command's error is said by the app's one printer: with ``--log-format
    json`` a ``runs show`` error is a JSON log line too (it was plain text before)."""
    proc = cli("runs", "show", "run-nope", "--artifacts", str(tmp_path / "store"),
               "--log-format", "json", cwd=tmp_path)
    assert proc.returncode == EXIT_CODES[RunnerError], proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [(d["event"], d["exit_code"]) for d in lines] == [("error", 2)]
    assert "run-nope" in lines[0]["message"]


def test_a_bad_key_value_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = cli("runs", "list", "--artifacts", str(tmp_path), "--storage-option", "novalue",
               cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --storage-option 'novalue': expected KEY=VALUE"


def test_an_invalid_traceparent_never_reaches_the_pod(tmp_path: Path) -> None:
    """``submit`` passed ``TRACEPARENT`` to the pod unchecked; now an invalid one is
    warned about and the run gets a new trace (the engine would have ignored it)."""
    pytest.importorskip("kubernetes", reason="the k8s extra is not installed")
    yaml = pytest.importorskip("yaml")
    from runner.orchestration.runner import parse_traceparent

    proc = cli("submit", "alpha.full", "--image", "ghcr.io/acme/runner:0.1.0", "--dry-run",
               "--artifacts", "s3://quant/runner", "-m", str(ROOT / "configs/manifest.json"),
               cwd=ROOT, env={"TRACEPARENT": "00-not-a-trace-01",
                              "RUNNER_ARTIFACT_KEY": "0123456789abcdef" * 4})
    assert proc.returncode == 0, proc.stderr
    assert "TRACEPARENT=00-not-a-trace-01 is not a W3C traceparent" in proc.stderr
    job = next(d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] == "Job")
    env = {e["name"]: e.get("value") for e in
           job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert parse_traceparent(env["TRACEPARENT"]) is not None


def test_the_app_itself_maps_errors_to_exit_codes(tmp_path: Path) -> None:
    """The mapping is in the app's root group, not only in the console script's
    ``main``: click's test runner gets the exit code, never the exception."""
    from typer.testing import CliRunner

    from runner.cli.root import app

    result = CliRunner().invoke(app, ["runs", "show", "run-nope", "--artifacts",
                                      str(tmp_path / "store")])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2
    assert "error: cannot read" in result.output
