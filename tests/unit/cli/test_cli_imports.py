"""The command line starts with only what the command asked for needs.

``runner --help`` and ``runner list`` need none of pandas, numpy, pyarrow,
OpenTelemetry, Kubernetes or Ray; ``runner validate`` imports the stage modules
(they register the stages it checks, and they import pandas) but not the store,
the tracing or the clients. Checked on ``sys.modules`` after a real command in a
fresh interpreter, never on time (benchmarks/startup.py measures that).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import runner
from runner.cli import ExecutorName
from runner.orchestration.executors import EXECUTORS
from tests.cli_probe import probe

ROOT = Path(__file__).resolve().parents[3]


NEVER = ("opentelemetry.sdk", "kubernetes", "ray", "sklearn", "jinja2", "runner.sdk",
         "runner.artifacts", "runner.telemetry.tracing", "runner.orchestration.runner")
"""Loaded by no command that only reads the manifest or prints help."""
HEAVY = ("pandas", "numpy", "pyarrow", "opentelemetry", "fsspec", "runner.context",
         "runner.orchestration.plan", "runner.stages", "runner.manifest", "pydantic")
"""Not needed to print help (typer's pydantic coercion is bypassed for the CLI's
options: runner.cli.coerce)."""
RICH_EXTRAS = ("rich.markdown", "rich.traceback", "markdown_it", "pygments")
"""What typer's rich help imports but never uses here (runner.cli.help)."""
LIVE = ("rich.live", "rich.spinner", "runner.progress")
"""The live progress board: loaded by ``runner run`` only."""
OTHER_COMMANDS = ("runner.cli.kube", "runner.cli.run", "runner.cli.runs", "runner.cli.traces",
                  "runner.cli.pipelines")
"""The command modules: each is imported by its own commands only (runner.cli.lazy)."""
OPENSSL = ("hashlib", "secrets")
"""Imported by the commands that hash or make ids (k8s trace ids, the check cache)."""


def _modules(args: list[str], tmp_path: Path) -> set[str]:
    code, modules, proc = probe(args, cwd=ROOT, out=tmp_path / "probe.json")
    assert code == 0, (code, proc.stderr[-2000:])
    return modules


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if n in modules or any(m.startswith(n + ".") for m in modules)]


@pytest.mark.parametrize(("args", "module"), [(["--help"], None),
                                            (["run", "--help"], "runner.cli.run"),
                                            (["submit", "--help"], "runner.cli.kube"),
                                            (["runs", "list", "--help"], "runner.cli.runs")])
def test_help_loads_nothing_heavy(args: list[str], module: str | None, tmp_path: Path) -> None:
    modules = _modules(args, tmp_path)
    assert "typer.rich_utils" in modules  # the help is typer's rich help
    assert _loaded(modules, (*NEVER, *HEAVY, *RICH_EXTRAS, *OPENSSL, *LIVE)) == []
    others = tuple(m for m in OTHER_COMMANDS if m != module)
    assert _loaded(modules, others) == []  # the root's help builds no command


def test_version_loads_nothing_heavy(tmp_path: Path) -> None:
    modules = _modules(["--version"], tmp_path)
    assert _loaded(modules, (*NEVER, *HEAVY, *RICH_EXTRAS, *OPENSSL, "typer.rich_utils")) == []


def test_list_reads_the_manifest_only(tmp_path: Path) -> None:
    modules = _modules(["list"], tmp_path)
    assert "runner.manifest" in modules  # the check below is not vacuous
    assert _loaded(modules, (*NEVER, "pandas", "numpy", "pyarrow", "opentelemetry", "fsspec",
                             "runner.context", "runner.stages",
                             "runner.orchestration.plan")) == []
    assert _loaded(modules, OTHER_COMMANDS[:-1]) == []  # pipelines' commands only


def test_validate_imports_the_stages_but_not_the_store_nor_tracing(tmp_path: Path) -> None:
    modules = _modules(["validate"], tmp_path)
    assert {"runner.stages", "runner.orchestration.plan"} <= modules
    assert _loaded(modules, (*NEVER, "opentelemetry", "fsspec")) == []


def test_a_quiet_json_run_never_imports_rich(tmp_path: Path) -> None:
    """``runner run P -q --json`` (a pod, a script) prints through no console: rich is
    imported when a console or an escape is first used, not before. Checked on a fully
    cached run: running the stages imports scikit-learn, which imports rich itself."""
    args = ["run", "alpha.full", "--artifacts", str(tmp_path / "store"), "-q", "--json",
            "--cache"]
    _modules(args, tmp_path)  # fills the cache
    code, modules, proc = probe(args, cwd=ROOT, out=tmp_path / "cached.json")
    assert code == 0, proc.stderr[-2000:]
    steps = json.loads(proc.stdout)["steps"]
    assert steps and {s["status"] for s in steps} == {"cached"}  # it ran (not vacuous)
    assert "runner.orchestration.runner" in modules
    assert _loaded(modules, ("rich", "sklearn")) == []
    args.remove("--json")  # the results printed as text: rich draws them
    assert "rich.table" in _modules(args, tmp_path)


def test_import_runner_is_light_and_every_name_still_imports() -> None:
    code = ("import sys, runner\n"
            "heavy = [m for m in ('pandas', 'numpy', 'pydantic', 'opentelemetry') "
            "if m in sys.modules]\n"
            "from runner import *  # noqa\n"
            "print(heavy, 'pandas' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert proc.stdout.split() == ["[]", "True"]
    for name in runner.__all__:
        assert getattr(runner, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        runner.nope


def test_cli_executor_names_are_the_engines() -> None:
    assert tuple(e.value for e in ExecutorName) == EXECUTORS
