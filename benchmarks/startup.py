"""How long the command line takes to start: ``runner --help``, ``list``, ``validate``.

Whole processes, cold (a fresh interpreter each time; the OS file cache is warm,
as it is for a user who types the command twice), timed from outside. Every
command runs once untimed first, then ``--repeats`` rounds, the commands in a
shuffled order in each round; the median counts, and beside it the median CPU
time (user + sys: less noisy than wall time on a busy machine). Bytecode is cached
as for an installed package (``PYTHONDONTWRITEBYTECODE`` is dropped: recompiling
runner's modules in every process is not start-up a user sees). The references, measured in the
same rounds: ``python -c pass`` (the interpreter's own start) and ``kedro --help``
from Kedro installed into this benchmark's own environment (``--venv``, created
with ``pip install kedro`` when it has no ``kedro``; without a network the row says
it was not measured, and why). Kedro's telemetry plugin is turned off for it
(``KEDRO_DISABLE_TELEMETRY``): its attempt to reach the network is not start-up.

    python benchmarks/startup.py                       # 11 rounds
    python benchmarks/startup.py --repeats 21 --importtime 12 --json

Targets (issue 14): each command at most 0.3 s here, and at most 0.75x
``kedro --help``. ``list`` and ``validate`` reuse the outcome of a check that passed
(runner/cli/cache.py, in a cache folder of this run's own): the untimed first call
checks in full, the timed ones reuse it; the ``--no-cache`` rows (no target) show
the full checks, as the first call after a change makes them. ``--importtime N``
also prints the N modules that cost the most (own time, ``python -X importtime``)
for each runner command.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGETS = True
"""This script's --json has "targets" rows (benchmarks/table.py collects them)."""

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "configs" / "manifest.json"
ABSOLUTE_TARGET = 0.3
"""Seconds, whole process (issue 14)."""
KEDRO_TARGET = 0.75
"""Times ``kedro --help`` measured in the same rounds (issue 14)."""
RUNNER_COMMANDS = {"runner --help": ["--help"],
                   "runner list": ["list", "--manifest", str(MANIFEST)],
                   "runner validate": ["validate", "--manifest", str(MANIFEST)]}
FULL_CHECKS = {"runner list --no-cache": ["list", "--no-cache", "--manifest", str(MANIFEST)],
               "runner validate --no-cache": ["validate", "--no-cache", "--manifest",
                                              str(MANIFEST)]}
"""Shown, no target: the checks in full, as the first call after a change makes them
(the timed ``list`` and ``validate`` reuse the outcome of the untimed first call while
nothing it rests on changes: runner/cli/cache.py)."""
KEDRO_ENV = {"KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}


def runner_command() -> list[str]:
    """The ``runner`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "runner"
    if script.exists():
        return [str(script)]
    found = shutil.which("runner")
    return [found] if found else [sys.executable, "-m", "runner.cli"]


def ensure_kedro(venv: Path, *, install: bool) -> tuple[Path | None, str]:
    """``kedro`` in the benchmark's own environment, installed there when missing;
    (None, why) when it cannot be had."""
    kedro = venv / "bin" / "kedro"
    if kedro.exists():
        return kedro, ""
    if not install:
        return None, f"no kedro in {venv} (--no-install)"
    print(f"installing Kedro into {venv} (once) ...", file=sys.stderr)
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
              "-q", "kedro"]]
    for step in steps:
        try:
            proc = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(step[:3])}: {exc}"
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            return None, f"pip install kedro failed: {lines[-1] if lines else proc.returncode}"
    return (kedro, "") if kedro.exists() else (None, f"pip installed no {kedro}")


def time_once(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + sys, from the process's own rusage) of one run."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = 0  # reaped above: Popen must not wait for it again
    return wall, usage.ru_utime + usage.ru_stime


def check_runs(command: list[str], env: dict[str, str]) -> str:
    """'' when the command exits 0, else why not (its last line of stderr)."""
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    if proc.returncode == 0:
        return ""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return f"exit {proc.returncode}: {lines[-1] if lines else ''}"


def measure(commands: dict[str, tuple[list[str], dict[str, str]]], repeats: int
            ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Interleaved rounds, a shuffled order in each; the wall and the CPU times of each
    command (CPU time, user + sys, is the less noisy figure on a busy machine)."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for round_no in range(repeats):
        order = list(commands)
        random.Random(round_no).shuffle(order)
        for name in order:
            command, env = commands[name]
            wall, used = time_once(command, env)
            times[name].append(wall)
            cpu[name].append(used)
    return times, cpu


def importtime(command: list[str], env: dict[str, str], top: int) -> list[tuple[str, float]]:
    """The ``top`` modules with the most own import time (ms) for one command."""
    script = ("import sys; sys.argv = ['runner', *sys.argv[1:]]; "
              "from runner.cli import main; main()")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", script, *command[1:]],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                          timeout=300)
    own: list[tuple[str, float]] = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            self_us, _, name = (part.strip() for part in line.split(":", 1)[1].split("|"))
            if self_us.isdigit():
                own.append((name, int(self_us) / 1000))
    return sorted(own, key=lambda item: -item[1])[:top]


def target_rows(medians: dict[str, float | None], kedro_why: str) -> list[dict[str, Any]]:
    """The issue's targets, in the benchmarks' common "targets" shape."""
    python = medians.get("python -c pass")
    kedro = medians.get("kedro --help")
    rows: list[dict[str, Any]] = []
    for name in RUNNER_COMMANDS:
        value = medians.get(name)
        rows.append({"figure": f"{name} cold", "value": value, "unit": "s",
                     "reference": "python -c pass", "reference_value": python,
                     "target": f"<= {ABSOLUTE_TARGET} s",
                     "met": value is not None and value <= ABSOLUTE_TARGET})
        ratio = value / kedro if value is not None and kedro else None
        row: dict[str, Any] = {
            "figure": f"{name} cold vs kedro --help", "value": ratio, "unit": "x",
            "reference": "kedro --help", "reference_value": kedro, "reference_unit": "s",
            "target": f"<= {KEDRO_TARGET}x kedro --help",
            "met": ratio is not None and ratio <= KEDRO_TARGET}
        if kedro is None:
            row["note"] = f"kedro --help not measured: {kedro_why}"
        rows.append(row)
    return rows


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "not measured"
    return f"{value:.3f} s" if unit == "s" else f"{value:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="timed rounds (median counts)")
    parser.add_argument("--venv", type=Path, default=ROOT / ".bench-venv",
                        help="the benchmark's own environment, where Kedro is installed")
    parser.add_argument("--no-install", action="store_true",
                        help="do not install Kedro when it is missing (row not measured)")
    parser.add_argument("--no-kedro", action="store_true", help="skip the Kedro reference")
    parser.add_argument("--importtime", type=int, default=0, metavar="N",
                        help="also list the N costliest imports of each runner command")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    cache = tempfile.mkdtemp(prefix="runner-startup-cache-")  # this run's own, cold at first
    env = {**os.environ, "RUNNER_CACHE_DIR": cache}
    env.pop("RUNNER_NO_CACHE", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the untimed first call writes the bytecode
    runner = runner_command()
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], env),
        **{name: ([*runner, *argv], env)
           for name, argv in {**RUNNER_COMMANDS, **FULL_CHECKS}.items()}}
    kedro, kedro_why = (None, "--no-kedro") if args.no_kedro else ensure_kedro(
        args.venv, install=not args.no_install)
    if kedro is not None:
        commands["kedro --help"] = ([str(kedro), "--help"], {**env, **KEDRO_ENV})
    failed = {name: why for name, (command, cmd_env) in commands.items()
              if (why := check_runs(command, cmd_env))}  # also the untimed warm-up
    if "kedro --help" in failed:
        kedro_why = failed["kedro --help"]
    try:
        times, cpu = measure({n: c for n, c in commands.items() if n not in failed},
                             args.repeats)
        offenders = {name: importtime(commands[name][0], env, args.importtime)
                     for name in RUNNER_COMMANDS if args.importtime and name not in failed}
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    medians: dict[str, float | None] = {n: statistics.median(t) for n, t in times.items()}
    rows = target_rows(medians, kedro_why)
    doc: dict[str, Any] = {
        "repeats": args.repeats, "cpus": os.cpu_count(), "runner": runner,
        "commands": {n: {"median_s": statistics.median(t), "best_s": min(t), "times_s": t,
                         "cpu_median_s": statistics.median(cpu[n]), "cpu_s": cpu[n]}
                     for n, t in times.items()},
        "failed": failed, "kedro": str(kedro) if kedro else None,
        "importtime_ms": offenders, "targets": rows}
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    python = medians.get("python -c pass")
    kedro_median = medians.get("kedro --help")
    print(f"start-up, whole processes: median (best) of {args.repeats} interleaved rounds; "
          "CPU: median user + sys")
    print(f"{'command':<26} {'median':>9} {'best':>9} {'x python':>9} {'x kedro':>8} "
          f"{'CPU':>9}")
    for name, t in times.items():
        med = statistics.median(t)
        xp = f"{med / python:.1f}" if python else "-"
        xk = f"{med / kedro_median:.2f}" if kedro_median else "-"
        print(f"{name:<26} {med:>7.3f} s {min(t):>7.3f} s {xp:>9} {xk:>8} "
              f"{statistics.median(cpu[name]):>7.3f} s")
    for name, why in failed.items():
        print(f"{name:<18} failed: {why}")
    if kedro is None:
        print(f"kedro --help       not measured: {kedro_why}")
    for name, top in offenders.items():
        print(f"\n{name}: costliest imports (own time)")
        for module, ms in top:
            print(f"  {ms:8.1f} ms  {module}")
    print("\ntargets")
    for row in rows:
        print(f"  {row['figure']:<36} {_fmt(row['value'], row['unit']):>12}  "
              f"{row['target']:<24} {'met' if row['met'] else 'not met'}")


if __name__ == "__main__":
    main()
