"""A driver process for the Ray tests: ``python -m tests.integration.ray_driver CASE [ARG]``.

Ray runs here, never in the pytest process. Each case runs plans through the
engine with the ``RayComputeEngine`` (joining the cluster named by RAY_ADDRESS,
or starting a local Ray when it is empty) and prints one JSON object on stdout.
The stages live in this module, so Ray workers import them from the ``tests``
package the engine ships with the job.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from runner.artifacts import ArtifactStore, StoreForensics
from runner.context import Context, field_rules
from runner.errors import ContextCollisionError, StageFailedError
from runner.manifest import parse_manifest
from runner.orchestration.executors.ray import RayComputeEngine
from runner.orchestration.plan import Plan, compile_plan
from runner.orchestration.runner import DAGRunner
from tests.shapes import REG, ShapeContext

MAX_BRANCHES = 8


def _register() -> None:
    for i in range(MAX_BRANCHES):
        def col(ctx: Any, i: int = i) -> Any:
            ctx.feature_store[f"c{i}"] = ctx.feature_store["p"] * (i + 1)
            return ctx

        def note(ctx: Any, i: int = i) -> Any:
            ctx.notes.append(f"n{i}")
            ctx.log(f"branch {i}")
            return ctx

        def value(ctx: Any, i: int = i) -> Any:
            ctx.value = 10 * (i + 1)
            return ctx

        for name, fn in ((f"col.{i}", col), (f"note.{i}", note), (f"set.{i}", value)):
            fn.__name__ = fn.__qualname__ = name.replace(".", "_")
            if REG.get(name) is None:
                REG.register(name, fn, writes=["feature_store"] if name.startswith("col") else None)


def where(ctx: Any) -> Any:
    ctx.log(f"ran in {os.getpid()}")
    return ctx


def die_once(ctx: Any) -> Any:
    """Die the first time (a marker file remembers), succeed when retried."""
    marker = Path(ctx.table["marker"])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    ctx.log("survived")
    return ctx


def slow(ctx: Any) -> Any:
    time.sleep(1.0)
    ctx.log("slow")
    return ctx


for _name, _fn in (("where", where), ("die.once", die_once), ("slow", slow)):
    if REG.get(_name) is None:
        REG.register(_name, _fn)
_register()


def plan_for(steps: list[Any], **spec: Any) -> Plan:
    spec.setdefault("context", "tests.shapes:ShapeContext")
    doc = {"pipelines": {"p": {"steps": steps, **spec}}}
    return compile_plan(parse_manifest(json.dumps(doc)), "p", registry=REG)


def base() -> ShapeContext:
    return ShapeContext(feature_store=pd.DataFrame({"p": [1.0, 2.0, 3.0]}))


def summary(ctx: Context) -> dict[str, Any]:
    data = ctx.__dict__
    return {"value": data["value"], "notes": data["notes"],
            "audit_trail": data["audit_trail"],
            "feature_store": data["feature_store"].to_dict(orient="list"),
            "table": data["table"]}


def run(plan: Plan, executor: Any, tmp: str, ctx: Any = None) -> dict[str, Any]:
    runner = DAGRunner(plan, executor=executor, workspace_root=tmp,
                       forensics=StoreForensics(ArtifactStore(tmp), fallback=None))
    try:
        result = runner.run(ctx if ctx is not None else base())
    except ContextCollisionError as exc:
        return {"error": "ContextCollisionError", "message": str(exc)}
    except StageFailedError as exc:
        return {"error": "StageFailedError", "message": str(exc), "stage": exc.stage,
                "error_context": exc.error_context}
    return {"context": summary(result.context),
            "records": [{"path": r.path, "name": r.name, "pid": r.pid, "node": r.node,
                         "executor": r.executor, "branch": r.branch} for r in result.records]}


def case_matrix(tmp: str) -> dict[str, Any]:
    """2..8 branches, every merge rule and a collision: inline and Ray side by side."""
    import ray

    ray.init()  # joins RAY_ADDRESS once; every run below reuses the connection
    out = {}
    rules: dict[str, dict[str, Any]] = {
        "collision": {}, "last_wins": {"merge": {"value": "last_wins"}},
        "first_wins": {"merge": {"value": "first_wins"}},
        "custom": {"merge": {"value": "tests.shapes:mean_rule"}},
    }
    for n in (2, 3, 4, MAX_BRANCHES):
        for rule, spec in rules.items():
            steps = ["log.a",
                     [[f"col.{i}", f"note.{i}", f"set.{i}"] for i in range(n)], "log.b"]
            plan = plan_for(steps, **spec)
            inline = run(plan, "inline", tmp)
            on_ray = run(plan, RayComputeEngine(), tmp)
            out[f"{n}-{rule}"] = {"inline": inline, "ray": on_ray}
    ray.shutdown()
    return out


def case_nodes(tmp: str) -> dict[str, Any]:
    """Branches pinned by custom resources: two on the head, two on the second node."""
    resources = {"where": {"resources": {"node2": 1}}, "slow": {"resources": {"head": 1}}}
    plan = plan_for(["log.a", [["where"], ["slow"], ["where", "log.c"], ["slow", "log.b"]],
                     "log.c"], resources=resources)
    return run(plan, RayComputeEngine(), tmp)


def case_die_once(tmp: str) -> dict[str, Any]:
    plan = plan_for(["log.a", [["log.b"], ["die.once"]], "log.c"],
                    resources={"die.once": {"max_retries": 1}})
    ctx = base()
    ctx.table["marker"] = str(Path(tmp, "died-once"))
    return run(plan, RayComputeEngine(), tmp, ctx)


def case_shipped(tmp: str) -> dict[str, Any]:
    """A stage module that exists only beside the driver (not on the nodes' path)."""
    folder = Path(tmp, "mine")
    folder.mkdir()
    (folder / "desk_stages.py").write_text(
        "import os\n"
        "def tag(ctx):\n"
        "    ctx.log(f'desk stage ran in {os.getpid()} from {__file__}')\n"
        "    return ctx\n")
    sys.path.insert(0, str(folder))
    doc = {"stages": {"desk.tag": "desk_stages:tag"},
           "pipelines": {"p": {"context": "tests.shapes:ShapeContext",
                               "steps": ["log.a", [["desk.tag"], ["log.b"]]]}}}
    plan = compile_plan(parse_manifest(json.dumps(doc)), "p", registry=REG)
    result = run(plan, RayComputeEngine(preload=["desk_stages", "tests.shapes"]), tmp)
    result["driver_pid"] = os.getpid()
    return result


def touch_cell(ctx: Any) -> Any:
    ctx.feature_store.loc[0, "p"] = -1.0  # in place: copy-on-write must copy, not share
    return ctx


def add_col(ctx: Any) -> Any:
    ctx.feature_store["q"] = ctx.feature_store["p"] * 2
    return ctx


for _name, _fn in (("touch.cell", touch_cell), ("add.col", add_col)):
    if REG.get(_name) is None:
        REG.register(_name, _fn)


def same_result(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two run summaries agree on what the merge contract fixes: every field exactly,
    except that fields merged with rule 'append' follow the order branches finished in,
    so for them only the multiset of items must agree."""
    appended = {f for f, rule in field_rules(ShapeContext).items() if rule == "append"}
    if a.keys() != b.keys():
        return False
    return all(Counter(map(json.dumps, a[k])) == Counter(map(json.dumps, b[k]))
               if k in appended else a[k] == b[k] for k in a)


def case_large(tmp: str) -> dict[str, Any]:
    """Large frames come back only when a branch changed them; the result is the same."""
    plan = plan_for([[["log.b"], ["touch.cell"]]], merge={"feature_store": "last_wins"})
    plan_add = plan_for([[["log.b"], ["add.col"], ["log.c"]]])
    out = {}
    for name, p in (("touch", plan), ("add", plan_add)):
        ctx = base()
        ctx.feature_store = pd.DataFrame({"p": range(50_000)}, dtype="float64")
        inline = run(p, "inline", tmp, ctx.model_copy(deep=True))
        on_ray = run(p, RayComputeEngine(), tmp, ctx)
        out[name] = {"same": same_result(inline["context"], on_ray["context"]),
                     "first": on_ray["context"]["feature_store"]["p"][0],
                     "columns": list(on_ray["context"]["feature_store"])}
    return out


def _pids(result: dict[str, Any]) -> list[int]:
    return sorted(int(t.split()[-1]) for t in result["context"]["audit_trail"]
                  if t.startswith("ran in "))


def case_pool(tmp: str) -> dict[str, Any]:
    """Two branches that say which process ran them, on a cluster this run joined."""
    plan = plan_for(["log.a", [["where"], ["where"], ["where"]], "log.c"])
    return {"pids": _pids(run(plan, RayComputeEngine(), tmp)), "driver_pid": os.getpid()}


def case_pool_changed(tmp: str) -> dict[str, Any]:
    """A stage module edited between two runs: the second run runs the edited code."""
    folder = Path(tmp, "mine")
    folder.mkdir()
    module = folder / "desk_version.py"
    sys.path.insert(0, str(folder))
    doc = {"stages": {"desk.version": "desk_version:version"},
           "pipelines": {"p": {"context": "tests.shapes:ShapeContext",
                               "steps": ["log.a", [["where"], ["desk.version"]]]}}}
    seen = []
    for version in ("one", "two"):
        module.write_text("import os\n"
                          "def version(ctx):\n"
                          f"    ctx.log('version {version} in ' + str(os.getpid()))\n"
                          "    return ctx\n")
        os.utime(module, ns=(time.time_ns(), time.time_ns() + (version == "two")))
        plan = compile_plan(parse_manifest(json.dumps(doc)), "p", registry=REG)
        result = run(plan, RayComputeEngine(preload=["desk_version", "tests.shapes"]), tmp)
        seen += [t for t in result["context"]["audit_trail"] if t.startswith("version")]
    return {"seen": seen}


def case_disconnect(tmp: str) -> dict[str, Any]:
    """A run on a running cluster returns while its connection closes in the background;
    the next run in the process connects again once that is done."""
    import ray

    from runner.orchestration.executors import ray as ray_executor

    closing, finished, release = [], [], threading.Event()
    real = ray.shutdown

    def slow_shutdown(**kwargs: Any) -> None:
        closing.append(threading.current_thread().name)
        release.wait(60)  # a safety timeout: a run waiting on it returns after it
        finished.append(True)
        real(**kwargs)

    ray.shutdown = slow_shutdown
    plan = plan_for(["log.a", [["where"], ["where"]], "log.c"])
    first = run(plan, RayComputeEngine(), tmp)
    returned_first = not finished  # the slow disconnection was still held back
    deadline = time.monotonic() + 10.0  # its thread may not have been scheduled yet
    while not closing and time.monotonic() < deadline:
        time.sleep(0.01)
    returned_first = returned_first and closing == ["runner-ray-init"]
    release.set()
    second = run(plan, RayComputeEngine(), tmp)  # joins the first disconnection first
    ray_executor.disconnected()
    return {"returned_first": returned_first, "closing": closing,
            "connected_after": ray.is_initialized(),
            "both_ran": [len(_pids(first)), len(_pids(second))]}


SHUTDOWNS: list[str] = []
"""The threads that called ``ray.shutdown``, in order (case ``released``)."""


def _shutdowns_within(seconds: float) -> int:
    """How many ``ray.shutdown`` calls were made, waiting up to ``seconds`` for one."""
    deadline = time.monotonic() + seconds
    while not SHUTDOWNS and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(SHUTDOWNS)


def probe(ctx: Any) -> Any:
    """A driver step: records how many times Ray's connection was closed by now."""
    ctx.table.setdefault("shutdowns", []).append(
        _shutdowns_within(10.0 if ctx.table.get("last") else 0.5))
    ctx.table["last"] = True
    return ctx


if REG.get("probe.shutdowns") is None:
    REG.register("probe.shutdowns", probe)


def case_released(tmp: str) -> dict[str, Any]:
    """The connection to a running cluster is closed once the run's last group is done
    (in the background), before the steps after it run; a group with another after it
    leaves it open. The run's end closes nothing more."""
    import ray

    from runner.orchestration.executors import ray as ray_executor

    real = ray.shutdown

    def recording(**kwargs: Any) -> None:
        SHUTDOWNS.append(threading.current_thread().name)
        real(**kwargs)

    ray.shutdown = recording
    steps = ["log.a", [["col.0"], ["col.1"]], "probe.shutdowns", [["col.2"], ["col.3"]],
             "probe.shutdowns", "log.c"]
    result = run(plan_for(steps), RayComputeEngine(), tmp)
    ray_executor.disconnected()
    return {"result": result, "shutdowns": SHUTDOWNS, "connected_after": ray.is_initialized()}


CASES = {"pool": case_pool, "disconnect": case_disconnect, "pool_changed": case_pool_changed,
         "large": case_large, "shipped": case_shipped, "matrix": case_matrix, "nodes": case_nodes,
         "die_once": case_die_once, "released": case_released}


def main() -> None:
    case, tmp = sys.argv[1], sys.argv[2]
    print(json.dumps(CASES[case](tmp), default=str))


if __name__ == "__main__":
    main()
