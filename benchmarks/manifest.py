"""What checking a manifest costs as its includes multiply: diamonds of pipelines.

Pipeline L0 includes L1 twice, L1 includes L2 twice, ... down to one stage: a
few hundred bytes that expand to 2^levels stage steps. Timed: what `runner
validate` does (parse_manifest + compile_all), once per size. Never fails on
time; prints the figures.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from runner.errors import RunnerError
from runner.manifest import parse_manifest
from runner.orchestration.plan import compile_all
from runner.registry import StageRegistry


def diamond(levels: int) -> str:
    pipelines: dict[str, Any] = {f"L{i}": {"steps": [f"L{i + 1}", f"L{i + 1}"]}
                                 for i in range(levels)}
    pipelines[f"L{levels}"] = {"steps": ["s"]}
    return json.dumps({"pipelines": pipelines})


def measure(levels: int, registry: StageRegistry) -> dict[str, Any]:
    text = diamond(levels)
    start = time.perf_counter()
    try:
        plans = compile_all(parse_manifest(text), registry=registry)
        outcome = f"ok: {sum(len(p.stages) for p in plans.values()):,} stage steps in all plans"
    except RunnerError as exc:
        outcome = str(exc).splitlines()[1].strip()
    return {"levels": levels, "bytes": len(text), "seconds": time.perf_counter() - start,
            "outcome": outcome}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[8, 10, 12, 14, 20, 30])
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    registry = StageRegistry()
    registry.register("s", lambda ctx: ctx)
    rows = [measure(levels, registry) for levels in args.levels]
    if args.json:
        print(json.dumps({"diamonds": rows}))
        return
    for row in rows:
        print(f"diamond of {row['levels']:2d} levels ({row['bytes']:5d} bytes): "
              f"{row['seconds']:8.3f} s  {row['outcome'][:100]}")


if __name__ == "__main__":
    main()
