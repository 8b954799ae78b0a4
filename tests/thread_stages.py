"""Stages that report, from wherever they run, the native thread pools they see.

Importable by worker processes (the processes executor pickles stages by name);
the same source is written beside a manifest for the CLI's Ray runs.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from runner.context import Context
from runner.manifest import parse_manifest
from runner.orchestration.native_threads import core_share
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


def _handshake(ctx: Context) -> str:
    """The file the share stages meet at: the context's first audit line says where."""
    return ctx.audit_trail[0].removeprefix("handshake:")


def _wait_for(path: str) -> None:
    deadline = time.monotonic() + 120  # a safety bound, not a timing
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


def share_short(ctx: Context) -> Context:
    """Ends once ``share_long`` has read its first share (:func:`_handshake`)."""
    _wait_for(_handshake(ctx))
    ctx.log(json.dumps({"stage": "threads.share_short", "share": core_share()}))
    return ctx


def share_long(ctx: Context) -> Context:
    """Reads its core share, lets ``share_short`` end, then reads it again (until it
    grows, when the context's audit trail says ``expect growth``)."""
    seen = [core_share()]
    with open(_handshake(ctx), "w"):
        pass
    grows = "expect growth" in ctx.audit_trail  # else one more read is enough
    deadline = time.monotonic() + (120 if grows else 0)  # a safety bound, not a timing
    while seen[-1] <= seen[0] and time.monotonic() < deadline:
        time.sleep(0.01)
        seen.append(core_share())
    seen.append(core_share())
    ctx.log(json.dumps({"stage": "threads.share_long", "shares": [seen[0], seen[-1]]}))
    return ctx


REG.register("threads.report", report)
REG.register("threads.share_short", share_short)
REG.register("threads.share_long", share_long)
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
