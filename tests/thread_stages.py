"""Stages that report, from wherever they run, the native thread pools they see.

Importable by worker processes (the processes executor pickles stages by name);
the same source is written beside a manifest for the CLI's Ray runs.
"""

from __future__ import annotations

import json
import os
from typing import Any

from runner.context import Context
from runner.manifest import parse_manifest
from runner.orchestration.plan import Plan, compile_plan
from runner.registry import StageRegistry

REG = StageRegistry()


def thread_report(name: str) -> dict[str, Any]:
    """OMP_NUM_THREADS, and the thread counts of the BLAS and OpenMP libraries loaded
    once scikit-learn's k-means (OpenMP) is imported, in this process and thread."""
    import sklearn.cluster  # noqa: F401 - loads scikit-learn's OpenMP runtime
    from threadpoolctl import threadpool_info

    info = threadpool_info()
    return {"stage": name, "pid": os.getpid(), "env": os.environ.get("OMP_NUM_THREADS"),
            "blas": sorted({i["num_threads"] for i in info if i["user_api"] == "blas"}),
            "openmp": sorted({i["num_threads"] for i in info if i["user_api"] == "openmp"})}


def report(ctx: Context) -> Context:
    ctx.log(json.dumps(thread_report("threads.report")))
    return ctx


def preloaded(ctx: Context) -> Context:
    ctx.log(json.dumps(thread_report("threads.preloaded")))
    return ctx


def more(ctx: Context) -> Context:
    ctx.log(json.dumps(thread_report("threads.more")))
    return ctx


REG.register("threads.report", report)
REG.register("threads.preloaded", preloaded, imports=["sklearn.cluster"])
REG.register("threads.more", more, imports=["sklearn.cluster"])


def thread_plan(steps: list[Any], resources: dict[str, Any] | None = None) -> Plan:
    """A one-pipeline plan over these stages (``resources`` as in a manifest)."""
    spec = {"steps": steps, **({"resources": resources} if resources else {})}
    text = json.dumps({"pipelines": {"threads": spec}})
    return compile_plan(parse_manifest(text, source="<thread stages>"), "threads", registry=REG)


def reports(ctx: Context) -> dict[str, dict[str, Any]]:
    """The reports a run's stages logged, by stage name."""
    found = [json.loads(line) for line in ctx.audit_trail if line.startswith("{")]
    return {r["stage"]: r for r in found}
