"""The step cache as a user meets it: ``runner run alpha.full --cache``.

Three figures, each against a reference measured in the same run:

- **A fully cached re-run.** ``runner run alpha.full --cache`` in a fresh process,
  once the cache holds every step (one untimed run fills it), against
  ``runner run alpha.full`` without the cache; interleaved rounds, whole processes
  timed from outside, medians. Target: at most 0.25x. Printed beside it, not a
  target: the floor, a process that imports the run's stage modules and its context
  type (what every run of these stages pays: pandas, NumPy) and exits, timed in the
  same rounds; a cached run can come no closer to it than the runner's own work.
- **A change to one stage's code.** A copy of the ``runner`` package (the shipped
  stages are its ``runner.stages``) is put first on ``PYTHONPATH``; one run with
  ``--cache`` fills the cache, then ``alpha.policy``'s default signal clip is edited
  in the copy and the pipeline runs again: the steps that ran must be exactly
  ``alpha.policy`` and the steps after it, the ones before it cached. Printed beside
  it, not a target: the steps a run with only the parameter ``tilt`` changed runs.
- **The cost of keys on a run with no hits.** ``QuantSDK.run_pipeline("alpha.full",
  cache=True)`` in this process on a fresh store each round (every step misses), with
  the step cache's ``key`` timed: key time as a fraction of the run (target: at most
  5 %). Filling the cache (the step's outputs kept as objects) is printed beside it,
  not a target.

    python benchmarks/step_cache.py                  # 5 rounds
    python benchmarks/step_cache.py --repeat 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGETS = True

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "configs" / "manifest.json"
PIPELINE = "alpha.full"
CACHED_TARGET = 0.25
KEY_TARGET = 0.05
CHANGED_STAGE = "alpha.policy"
EDIT = ('clip = param_float(ctx.params, "signal_clip", 2.5)',
        'clip = param_float(ctx.params, "signal_clip", 2.25)')
"""The edit made to ``alpha.policy`` in the copy: a smaller default clip (new signals)."""
PARAM = "tilt"
"""The run parameter changed for the printed (not targeted) figure: alpha.synthesis's."""


def runner_command(store: Path, *args: str) -> list[str]:
    runner = Path(sys.executable).with_name("runner")
    return [str(runner), "run", PIPELINE, "--manifest", str(MANIFEST), "--artifacts",
            str(store), "-q", "--json", *args]


def run_cli(command: list[str], *, env: dict[str, str] | None = None,
            ) -> tuple[float, dict[str, Any]]:
    """Wall seconds of one whole ``runner run`` process, and its ``--json`` document."""
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800,
                          env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command[1:3])} failed ({proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout)


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {step["name"]: step["status"] for step in doc["steps"]}


def floor_command() -> list[str]:
    """A process that imports what the run's stages need (their modules, the context
    type's) and exits: what no run of these stages can avoid."""
    sys.path.insert(0, str(ROOT))
    from runner.orchestration.warm import stage_modules
    from runner.sdk import QuantSDK

    plan = QuantSDK(MANIFEST).plan(PIPELINE)
    modules = [*stage_modules(plan), plan.context_type.__module__]
    return [sys.executable, "-c", "import " + ", ".join(dict.fromkeys(modules))]


def cached_rerun(folder: Path, repeat: int) -> dict[str, Any]:
    """Whole-process medians of uncached and fully cached runs and of the import
    floor, interleaved."""
    store = folder / "rerun"
    floor_cmd = floor_command()
    _, doc = run_cli(runner_command(store, "--cache"))  # fills the cache (untimed)
    _, doc = run_cli(runner_command(store, "--cache"))  # untimed too: checks it hits
    if set(statuses(doc).values()) != {"cached"}:
        raise SystemExit(f"a second --cache run did not hit every step: {statuses(doc)}")
    plain: list[float] = []
    cached: list[float] = []
    floor: list[float] = []
    for _ in range(max(1, repeat)):
        plain.append(run_cli(runner_command(store))[0])
        wall, doc = run_cli(runner_command(store, "--cache"))
        cached.append(wall)
        floor.append(timed_process(floor_cmd))
    return {"uncached_s": plain, "cached_s": cached, "floor_s": floor,
            "floor_modules": floor_cmd[-1].removeprefix("import ").split(", "),
            "ratio": statistics.median(cached) / statistics.median(plain),
            "floor_ratio": statistics.median(floor) / statistics.median(plain)}


def timed_process(command: list[str]) -> float:
    """Wall seconds of one process that must succeed."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=600, cwd=ROOT)
    return time.perf_counter() - start


def changed_stage(folder: Path) -> dict[str, Any]:
    """Which steps run after ``alpha.policy``'s code changed (a copy of the package)."""
    copy = folder / "copy"
    shutil.copytree(ROOT / "runner", copy / "runner",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ) | {"PYTHONPATH": str(copy)}
    store = folder / "changed"
    run_cli(runner_command(store, "--cache"), env=env)
    source = copy / "runner" / "stages" / "alpha.py"
    text = source.read_text()
    if text.count(EDIT[0]) != 1:
        raise SystemExit(f"cannot find the line to edit in {CHANGED_STAGE}: {EDIT[0]!r}")
    source.write_text(text.replace(*EDIT))
    wall, doc = run_cli(runner_command(store, "--cache"), env=env)
    order = [step["name"] for step in doc["steps"]]
    ran = [name for name, status in statuses(doc).items() if status != "cached"]
    after = order[order.index(CHANGED_STAGE):]
    # the changed stage runs, nothing before it does; a step after it runs when one of
    # its inputs changed (risk.backtest reads prices and forecasts, not the signals)
    return {"steps": order, "ran": ran, "expected": after, "wall_s": wall,
            "cached_after": [name for name in after if name not in ran],
            "met": bool(ran) and ran[0] == CHANGED_STAGE and set(ran) <= set(after)}


def changed_param(folder: Path) -> dict[str, Any]:
    """Which steps run when only the run parameter ``tilt`` changes, on the store
    :func:`cached_rerun` filled (stages name the parameters they read)."""
    _, doc = run_cli(runner_command(folder / "rerun", "--cache", "-p", f"{PARAM}=0.5"))
    return {"param": PARAM, "ran": [n for n, s in statuses(doc).items() if s != "cached"],
            "cached": [n for n, s in statuses(doc).items() if s == "cached"]}


def timed(owner: type, name: str, spent: list[float]) -> Callable[[], None]:
    """Wrap ``owner.name`` so its calls add their seconds to ``spent[0]``; returns undo."""
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    setattr(owner, name, wrapper)
    return lambda: setattr(owner, name, original)


def key_cost(folder: Path, repeat: int) -> dict[str, Any]:
    """Per round on a fresh store: the run's seconds, its keys' and its fills'."""
    sys.path.insert(0, str(ROOT))
    from runner.cache.step_cache import StepCache
    from runner.sdk import QuantSDK

    rounds = []
    for index in range(max(1, repeat) + 1):  # the first round warms imports: not counted
        keys, fills = [0.0], [0.0]
        undo = [timed(StepCache, "key", keys), timed(StepCache, "fill", fills)]
        try:
            sdk = QuantSDK(MANIFEST, artifacts=folder / f"keys-{index}")
            start = time.perf_counter()
            result = sdk.run_pipeline(PIPELINE, cache=True)
            wall = time.perf_counter() - start
        finally:
            for call in undo:
                call()
        if any(record.status == "cached" for record in result.records):
            raise SystemExit("a run on a fresh store hit the cache")
        if index:
            rounds.append({"run_s": wall, "keys_s": keys[0], "fills_s": fills[0]})
    return {"rounds": rounds,
            "keys": statistics.median(r["keys_s"] / r["run_s"] for r in rounds),
            "fills": statistics.median(r["fills_s"] / r["run_s"] for r in rounds)}


def targets(rerun: dict[str, Any], change: dict[str, Any], keys: dict[str, Any],
            ) -> list[dict[str, Any]]:
    plain = statistics.median(rerun["uncached_s"])
    run = statistics.median(r["run_s"] for r in keys["rounds"])
    return [
        {"figure": f"runner run {PIPELINE} --cache, every step cached",
         "value": round(rerun["ratio"], 3), "unit": "x", "reference_unit": "s",
         "reference": f"runner run {PIPELINE} without the cache",
         "reference_value": round(plain, 3),
         "target": f"<= {CACHED_TARGET}x", "met": rerun["ratio"] <= CACHED_TARGET,
         "note": f"floor {rerun['floor_ratio']:.3f}x: a process importing the run's stage "
                 f"modules and exiting, {statistics.median(rerun['floor_s']):.3f} s"},
        {"figure": f"steps run after {CHANGED_STAGE}'s code changed",
         "value": len(change["ran"]), "unit": "steps", "reference_unit": "steps",
         "reference": f"{CHANGED_STAGE} and the steps after it",
         "reference_value": len(change["expected"]),
         "target": f"{CHANGED_STAGE} and only steps after it", "met": change["met"]},
        {"figure": f"computing step keys, {PIPELINE} --cache with no hits",
         "value": round(100 * keys["keys"], 2), "unit": "%", "reference_unit": "s",
         "reference": "the same run (in process)", "reference_value": round(run, 3),
         "target": f"<= {100 * KEY_TARGET:g} % of the run", "met": keys["keys"] <= KEY_TARGET},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (medians)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runner-cache-bench-") as tmp:
        folder = Path(tmp)
        rerun = cached_rerun(folder, args.repeat)
        param = changed_param(folder)
        change = changed_stage(folder)
        keys = key_cost(folder, min(args.repeat, 3))
    rows = targets(rerun, change, keys)
    out = {"cores": os.cpu_count(), "repeat": args.repeat, "rerun": rerun,
           "changed_stage": change, "changed_param": param, "key_cost": keys,
           "targets": rows}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"runner run {PIPELINE}, whole processes, {out['cores']} cores, medians of "
          f"{args.repeat} interleaved rounds")
    print(f"  without the cache {statistics.median(rerun['uncached_s']):6.2f} s   "
          f"every step cached {statistics.median(rerun['cached_s']):6.2f} s "
          f"({rerun['ratio']:.2f}x)")
    print(f"  floor: importing the stages' modules and exiting "
          f"{statistics.median(rerun['floor_s']):6.2f} s ({rerun['floor_ratio']:.2f}x; "
          f"{', '.join(rerun['floor_modules'])})")
    print(f"  after editing {CHANGED_STAGE}: ran {', '.join(change['ran'])}; after it, "
          f"cached (inputs unchanged): {', '.join(change['cached_after']) or 'none'}")
    print(f"  with -p {PARAM}=0.5 only: ran {', '.join(param['ran'])}; cached "
          f"{', '.join(param['cached'])}")
    print(f"  with the cache and no hits: keys {100 * keys['keys']:.2f} % of the run, "
          f"fills {100 * keys['fills']:.2f} %")
    print("targets:")
    for row in rows:
        print(f"  {row['figure']:58s} {row['value']:>7}{row['unit']}  {row['target']:26s} "
              f"{'met' if row['met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
