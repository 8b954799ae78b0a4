"""Native thread pools (OpenMP, BLAS) of a parallel branch are sized to its CPU share."""

from __future__ import annotations

import os
from pathlib import Path

from threadpoolctl import threadpool_info

from runner.context import Context
from runner.orchestration.native_threads import THREAD_ENV, available_cpus, branch_threads
from runner.orchestration.runner import DAGRunner
from tests.thread_stages import reports, thread_plan

SHARE = max(1, available_cpus() // 2)
"""What each of two default branches gets on this machine."""


def run(plan, executor: str, tmp: Path):
    return DAGRunner(plan, executor=executor,
                     workspace_root=tmp / "w").run(Context())


def test_a_branch_gets_its_cpu_request_or_its_share_of_the_cores():
    assert branch_threads({}, concurrent=2, cpus=8) == 4
    assert branch_threads({}, concurrent=3, cpus=8) == 2
    assert branch_threads({}, concurrent=4, cpus=2) == 1  # never none
    assert branch_threads({"num_cpus": 3}, concurrent=4, cpus=2) == 3  # asked for more
    assert branch_threads({"num_cpus": 0.5}, concurrent=1, cpus=8) == 1
    assert branch_threads({"num_cpus": 1.5}, concurrent=1, cpus=8) == 2


def test_processes_workers_see_their_share_whether_openmp_loads_before_or_in_the_branch(
        tmp_path):
    # threads.preloaded declares scikit-learn: the forkserver has loaded its OpenMP
    # (threadpoolctl limits it); threads.report imports it inside the branch (the
    # variables set before it loads hold)
    result = run(thread_plan([["threads.report", "threads.preloaded"]]), "processes", tmp_path)
    got = reports(result.context)
    assert set(got) == {"threads.report", "threads.preloaded"}
    for report in got.values():
        assert report["pid"] != os.getpid()
        assert report["env"] == str(SHARE)
        assert report["blas"] == [SHARE], report
        assert report["openmp"] == [SHARE], report


def test_a_branch_that_asks_for_more_cpus_gets_more_threads(tmp_path):
    plan = thread_plan([["threads.report", "threads.more"]],
                       resources={"threads.more": {"num_cpus": SHARE + 1}})
    got = reports(run(plan, "processes", tmp_path).context)
    assert got["threads.report"]["openmp"] == got["threads.report"]["blas"] == [SHARE]
    assert got["threads.more"]["env"] == str(SHARE + 1)
    assert got["threads.more"]["openmp"] == got["threads.more"]["blas"] == [SHARE + 1]


def test_threads_branches_get_their_share_and_the_driver_gets_its_pools_back(tmp_path):
    before = {i["filepath"]: i["num_threads"] for i in threadpool_info()}
    env = {key: os.environ.get(key) for key in THREAD_ENV}
    got = reports(run(thread_plan([["threads.preloaded", "threads.more"]]), "threads",
                      tmp_path).context)
    for report in got.values():
        assert report["openmp"] == [SHARE]  # per branch thread
        assert report["blas"] == [SHARE]  # process-wide, during the group
    after = {i["filepath"]: i["num_threads"] for i in threadpool_info()}
    assert {k: v for k, v in after.items() if k in before} == before
    assert {key: os.environ.get(key) for key in THREAD_ENV} == env


def test_inline_branches_keep_the_whole_machine(tmp_path):
    got = reports(run(thread_plan([["threads.preloaded", "threads.report"]]), "inline",
                      tmp_path).context)
    blas = sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
    assert got["threads.report"]["blas"] == blas


def test_the_driver_imports_what_follows_a_group_while_the_group_runs(tmp_path, monkeypatch):
    """A stage after the group declares a module nobody loaded: the driver imports it
    on its warming thread while the branches run in workers, before the merge."""
    import json
    import sys

    from runner.manifest import parse_manifest
    from runner.orchestration.plan import compile_plan
    from runner.orchestration.warm import imports_after_groups
    from tests.thread_stages import REG

    name = f"warm_probe_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "import threading\nIMPORTED_ON = threading.current_thread().name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen: list[str] = []

    def after(ctx):
        module = sys.modules.get(name)
        seen.append(getattr(module, "IMPORTED_ON", "not imported"))
        return ctx

    registry = REG.child()
    registry.register("threads.after", after, imports=[name])
    text = json.dumps({"pipelines": {"t": {"steps": [["threads.report", "threads.more"],
                                                      "threads.after"]}}})
    plan = compile_plan(parse_manifest(text, source="<test>"), "t", registry=registry)
    assert imports_after_groups(plan) == {"t[0]": (name,)}
    try:
        run(plan, "processes", tmp_path)
    finally:
        sys.modules.pop(name, None)
    assert seen == ["runner-warm-imports"]


def test_a_stage_named_in_the_manifest_keeps_the_imports_it_declares(tmp_path):
    import json
    import sys

    from runner.manifest import load_manifest
    from runner.orchestration.plan import compile_plan
    from runner.registry import StageRegistry

    module = f"declared_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(
        "from runner.registry import StageRegistry, stage\n\n"
        "@stage('mine.fit', imports=['sklearn.ensemble'], registry=StageRegistry())\n"
        "def fit(ctx):\n    return ctx\n")
    (tmp_path / "manifest.json").write_text(json.dumps({
        "stages": {"mine.fit": f"{module}:fit"},
        "pipelines": {"p": {"steps": ["mine.fit"]}}}))
    try:
        plan = compile_plan(load_manifest(tmp_path / "manifest.json"), "p",
                            registry=StageRegistry())
    finally:
        sys.modules.pop(module, None)
    assert plan.steps[0].entry.imports == ("sklearn.ensemble",)
