"""A driver process for the executor contract suite:
``python -m tests.unit.orchestration.executor_driver CASE EXECUTOR TMP``.

Each case runs one plan through the engine on the named executor (``ray`` joins the
cluster RAY_ADDRESS names) and prints one JSON object on stdout: the merged
context or the run's error, the step records, and what the run's hooks heard. The
same driver serves every executor, so the suite compares like with like; Ray never
runs in the pytest process.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from runner.artifacts import ArtifactStore, StoreForensics, load_error_context
from runner.errors import StageFailedError
from runner.orchestration.hooks import RunHook
from runner.orchestration.runner import DAGRunner
from tests.shapes import REG, base_context, plan_for


def die(ctx: Any) -> Any:
    """Kill this process, as the kernel's OOM killer would."""
    os.kill(os.getpid(), signal.SIGKILL)
    return ctx


if REG.get("die.now") is None:
    REG.register("die.now", die)


class BranchEar(RunHook):
    """A branch hook: hears the steps that start where the branch runs."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def on_step_start(self, run: Any, step: Any) -> None:
        self.started.append(step.path)

    def payload(self) -> Any:
        return self.started


class Ear(RunHook):
    """The driver's hook: what it hears, live or reported when a branch returns."""

    def __init__(self, tmp: str) -> None:
        self.tmp = Path(tmp)
        self.started: list[str] = []
        self.ended: list[str] = []
        self.branch_ends: list[list[Any]] = []
        self.payloads: list[str] = []

    def on_step_start(self, run: Any, step: Any) -> None:
        self.started.append(step.path)

    def on_step_end(self, run: Any, record: Any, context: Any) -> None:
        self.ended.append(record.path)

    def on_branch_end(self, run: Any, branch: Any, context: Any) -> None:
        self.branch_ends.append([branch.path, context is not None])
        if context is None:  # the failure reached the driver: the run is cancelled
            (self.tmp / "cancelled").write_text("x")

    def branch_hook(self, run: Any, branch: Any) -> RunHook | None:
        return BranchEar()

    def on_branch_payload(self, run: Any, branch: Any, payload: Any) -> None:
        self.payloads += payload


STEPS = {
    # groups, a group nested in a branch, columns, lists and a value merged
    "same": ["log.a", ["add.x", [["add.y", "log.b"], "log.c"], "add.z"], ["value.1", "log.c"]],
    "fail": ["log.a", ["log.b", "fail"], "log.c"],
    # the failing branch waits until its sibling is in flight; the sibling waits until
    # the driver has heard of the failure, then must not start its next step
    "cancel": [["fail", ["wait.cancel", "log.c"]], "log.b"],
    "die": ["log.a", ["log.b", "die.now"], "log.c"],
}


def run(case: str, executor: str, tmp: str) -> dict[str, Any]:
    ear = Ear(tmp)
    table: dict[str, Any] = {}
    if case == "cancel":
        table["cancelled"] = str(Path(tmp, "cancelled"))
        if executor != "inline":  # inline runs the failing branch first, alone
            table["started"] = str(Path(tmp, "started"))
    runner = DAGRunner(plan_for(STEPS[case]), executor=executor, hooks=[ear],
                       forensics=StoreForensics(ArtifactStore(tmp), fallback=None),
                       workspace_root=tmp, max_workers=2)
    out: dict[str, Any] = {}
    try:
        result = runner.run(base_context(table=table))
    except StageFailedError as exc:
        received = load_error_context(exc.error_context) if exc.error_context else None
        out["error"] = {"stage": exc.stage, "path": exc.path, "exc_type": exc.exc_type,
                        "message": exc.message, "exit_code": exc.exit_code,
                        "received_trail": received.audit_trail if received else None,
                        "received_columns": list(received.feature_store.columns)
                        if received else None}
        records = exc.records
    else:
        ctx = result.context
        out["context"] = {"feature_store": ctx.feature_store.to_dict(orient="list"),
                          "value": ctx.value, "audit_trail": ctx.audit_trail,
                          "notes": ctx.notes}
        records = list(result.records)
    out["records"] = [{"path": r.path, "name": r.name, "status": r.status, "kind": r.kind,
                       "executor": r.executor, "branch": r.branch, "pid": r.pid}
                      for r in records]
    out["driver_pid"] = os.getpid()
    out["heard"] = {"started": ear.started, "ended": ear.ended,
                    "branch_ends": ear.branch_ends, "payloads": ear.payloads}
    return out


def main() -> None:
    case, executor, tmp = sys.argv[1:4]
    print(json.dumps(run(case, executor, tmp), default=str))


if __name__ == "__main__":
    main()
