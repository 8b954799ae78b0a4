"""The CLI starts the processes executor's forkserver before its first step: the driver
imports what the plan's workers need (found from the manifest itself), once, then forks
the forkserver, which inherits it all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from runner.artifacts import ArtifactStore, load_checkpoint, read_run
from runner.context import Context
from runner.orchestration.forkserver import EXIT_PRELOAD, worker_preload
from runner.orchestration.preload_plan import preload_plan

ROOT = Path(__file__).resolve().parents[3]

STAGES = textwrap.dedent('''
    """Stages that say where they run and what was loaded before they ran."""
    import gc, json, os, sys
    from pathlib import Path

    from runner.orchestration.forkserver import forkserver_pid
    from runner.registry import stage

    HERE = Path(__file__).parent
    # imported by the driver when it loads the manifest: was the forkserver up already?
    (HERE / f"loaded-{os.getpid()}.json").write_text(json.dumps(forkserver_pid()))


    def _seen(ctx, name):
        (HERE / f"seen-{name}.json").write_text(json.dumps(
            {"pid": os.getpid(), "ppid": os.getppid(),
             "marker_loaded": "early_marker" in sys.modules,
             "pandas_loaded": "pandas" in sys.modules,
             "frozen": gc.get_freeze_count(),
             "cmdline": Path("/proc/self/cmdline").read_bytes().decode().split("\\0")}))
        return ctx


    @stage("early.first")
    def first(ctx):
        return _seen(ctx, "early.first")


    @stage("early.heavy", imports=["early_marker"])
    def heavy(ctx):
        seen = _seen(ctx, "early.heavy")
        import early_marker  # noqa: F401
        return seen


    @stage("early.light")
    def light(ctx):
        return _seen(ctx, "early.light")
''')

MARKER = textwrap.dedent('''
    """Stands for a heavy library: says which process imported it, and which process
    ran its interpreter shutdown (atexit) after importing it."""
    import atexit
    import os
    from pathlib import Path

    HERE = Path(__file__).parent
    with open(HERE / "marker-imports.txt", "a") as out:
        out.write(f"{os.getpid()}\\n")
    atexit.register(lambda: (HERE / f"atexit-{os.getpid()}").write_text("shut down"))
''')

MANIFEST = {
    "pipelines": {
        "early": {"context": "runner.context:Context",
                  "steps": ["early.first", ["early.heavy", "early.light"]]},
        "flat": {"context": "runner.context:Context", "steps": ["early.first"]},
    },
    "stages": {"early.first": "early_stages:first", "early.heavy": "early_stages:heavy",
               "early.light": "early_stages:light"},
}


def write_project(folder: Path) -> Path:
    (folder / "early_stages.py").write_text(STAGES)
    (folder / "early_marker.py").write_text(MARKER)
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps(MANIFEST))
    return manifest


def run_cli(*args: str, cwd: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def seen(folder: Path) -> dict[str, dict]:
    """What each stage wrote about where it ran."""
    return {p.stem.removeprefix("seen-"): json.loads(p.read_text())
            for p in folder.glob("seen-*.json")}


def test_the_driver_imports_the_branch_imports_once_then_forks_the_forkserver(tmp_path):
    """Not the forkserver importing scikit-learn while the driver imports it too (its
    warm-up for the steps after the group), on the same cores: the driver imports it
    before it forks the forkserver, and every worker starts with it loaded."""
    manifest = write_project(tmp_path)
    doc = run_cli("run", "early", "-m", str(manifest), "-e", "processes", "--json",
                  "--run-id", "early-1", cwd=tmp_path)
    driver = doc["steps"][0]["pid"]
    # the driver imported its stage modules before the forkserver began
    assert json.loads((tmp_path / f"loaded-{driver}.json").read_text()) is None
    got = seen(tmp_path)
    assert got["early.first"]["pid"] == driver
    server = got["early.heavy"]["ppid"]
    assert server not in (driver, 1)
    for name in ("early.heavy", "early.light"):
        assert got[name]["pid"] != driver
        assert got[name]["ppid"] == server  # forked from one forkserver
        assert got[name]["marker_loaded"]  # before the stage ran: preloaded
        assert got[name]["frozen"] > 0  # inherited objects left out of its collections
    # imported once, by the driver: not by the forkserver, not by each worker
    assert (tmp_path / "marker-imports.txt").read_text().split() == [str(driver)]
    assert list(tmp_path.glob("loaded-*.json")) == [tmp_path / f"loaded-{driver}.json"]


def test_the_forkserver_is_forked_from_the_driver_after_its_heavy_imports(tmp_path):
    """Not a fresh interpreter importing pandas and the engine again beside the driver:
    a fork of the driver (same command line), so the workers hold pandas already."""
    manifest = write_project(tmp_path)
    doc = run_cli("run", "early", "-m", str(manifest), "-e", "processes", "--json",
                  "--run-id", "early-4", cwd=tmp_path)
    got = seen(tmp_path)
    assert got["early.first"]["cmdline"][1:4] == ["-m", "runner.cli", "run"]
    for name in ("early.heavy", "early.light"):
        assert got[name]["cmdline"] == got["early.first"]["cmdline"]  # forked, not spawned
        assert got[name]["pandas_loaded"]
    assert doc["steps"][-1]["status"] == "succeeded"


def test_the_forkserver_ends_without_a_shutdown_once_the_driver_has_ended(tmp_path):
    """Its shutdown (tearing down pandas, scikit-learn) came after the driver's, holding
    the driver's stderr open: a caller reading it waited for both, one after the other."""
    manifest = write_project(tmp_path)
    doc = run_cli("run", "early", "-m", str(manifest), "-e", "processes", "--json",
                  "--run-id", "early-3", cwd=tmp_path)  # returns at EOF: the forkserver ended
    driver = doc["steps"][0]["pid"]
    server = seen(tmp_path)["early.heavy"]["ppid"]
    # the forkserver holds what the driver imported before it, atexit handlers too
    assert (tmp_path / "marker-imports.txt").read_text().split() == [str(driver)]
    assert not (tmp_path / f"atexit-{server}").exists()  # ended with no shutdown
    assert (tmp_path / "seen-early.heavy.json").exists()


def test_the_exit_preload_comes_last_so_it_runs_first_at_exit():
    assert worker_preload(["sklearn.ensemble"])[-1] == EXIT_PRELOAD
    assert worker_preload(["sklearn.ensemble"])[:2] == ["__main__", "runner.orchestration.execute"]


def test_inline_runs_start_no_forkserver(tmp_path):
    manifest = write_project(tmp_path)
    doc = run_cli("run", "early", "-m", str(manifest), "--json", "--run-id", "early-2",
                  cwd=tmp_path)
    driver = doc["steps"][0]["pid"]
    assert json.loads((tmp_path / f"loaded-{driver}.json").read_text()) is None
    assert (tmp_path / "marker-imports.txt").read_text().split() == [str(driver)]


def test_the_forkserver_preloads_only_for_a_plan_with_parallel_groups(tmp_path, monkeypatch):
    manifest = write_project(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {"pipeline": "early", "manifest": str(manifest), "path": []}
    assert preload_plan(json.dumps(spec))[-1] == "early_marker"
    assert "early_stages" in preload_plan(json.dumps(spec))
    assert preload_plan(json.dumps({**spec, "pipeline": "flat"})) == []
    # a plan that does not compile leaves the forkserver cold; the driver says why
    assert preload_plan(json.dumps({**spec, "pipeline": "nope"})) == []
    assert preload_plan("not json") == []


FORK_OR_SPAWN = textwrap.dedent('''
    """Start the forkserver with or without another thread running; print how it began."""
    import json, multiprocessing, os, sys, threading
    from pathlib import Path
    from runner.orchestration.forkserver import forkserver_pid, start_forkserver

    if __name__ == "__main__":
        if sys.argv[1] == "thread":
            done = threading.Event()
            threading.Thread(target=done.wait, daemon=True).start()
        start_forkserver(pipeline="flat", manifest=sys.argv[2], fork_after=("json",))
        worker = multiprocessing.get_context("forkserver").Process(target=os.getpid)
        worker.start()  # served: the forkserver runs what it was started as
        worker.join()
        cmdline = Path(f"/proc/{forkserver_pid()}/cmdline").read_bytes().split(b"\\0")
        mine = Path("/proc/self/cmdline").read_bytes().split(b"\\0") == cmdline
        spawned = b"multiprocessing.forkserver" in b" ".join(cmdline)
        print(json.dumps({"mine": mine, "spawned": spawned}))
''')


def test_a_driver_running_a_thread_spawns_its_forkserver_instead_of_forking(tmp_path):
    """A fork copies no thread: a lock another thread holds would stay held for good."""
    manifest = write_project(tmp_path)
    (tmp_path / "fork_or_spawn.py").write_text(FORK_OR_SPAWN)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    got = {}
    for case in ("alone", "thread"):
        proc = subprocess.run([sys.executable, "fork_or_spawn.py", case, str(manifest)],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        got[case] = json.loads(proc.stdout)
    assert got["alone"] == {"mine": True, "spawned": False}
    assert got["thread"] == {"mine": False, "spawned": True}


def test_a_module_that_starts_a_thread_on_import_leaves_the_forkserver_spawned(tmp_path):
    """A fork copies no thread: when a module the driver imports for the workers starts
    one, the forkserver is spawned instead, and the run goes on as before."""
    manifest = write_project(tmp_path)
    with (tmp_path / "early_marker.py").open("a") as marker:
        marker.write("import threading\nthreading.Thread(target=threading.Event().wait, "
                     "daemon=True).start()\n")
    doc = run_cli("run", "early", "-m", str(manifest), "-e", "processes", "--json",
                  "--run-id", "early-5", cwd=tmp_path)
    assert doc["status"] == "succeeded"
    got = seen(tmp_path)
    driver = got["early.first"]["pid"]
    for name in ("early.heavy", "early.light"):
        assert got[name]["pid"] != driver
        assert got[name]["marker_loaded"]  # the spawned forkserver preloaded it
        assert "multiprocessing.forkserver" in " ".join(got[name]["cmdline"])
    imports = (tmp_path / "marker-imports.txt").read_text().split()
    assert imports == [str(driver), str(got["early.heavy"]["ppid"])]


THREAD_STAGES = textwrap.dedent('''
    """Branch stages that report the native pools they see, scikit-learn loaded before."""
    import json, os, sys
    from pathlib import Path

    from runner.registry import stage


    def _report(ctx, name):
        loaded = "sklearn.cluster" in sys.modules
        from threadpoolctl import threadpool_info

        info = threadpool_info()
        (Path(__file__).parent / f"pools-{name}.json").write_text(json.dumps({
            "pid": os.getpid(), "loaded": loaded, "env": os.environ.get("OMP_NUM_THREADS"),
            "blas": sorted({i["num_threads"] for i in info if i["user_api"] == "blas"}),
            "openmp": sorted({i["num_threads"] for i in info if i["user_api"] == "openmp"})}))
        return ctx


    @stage("pools.first")
    def first(ctx):
        return _report(ctx, "first")


    @stage("pools.a", imports=["sklearn.cluster"])
    def a(ctx):
        return _report(ctx, "a")


    @stage("pools.b", imports=["sklearn.cluster"])
    def b(ctx):
        return _report(ctx, "b")
''')


def test_workers_forked_with_scikit_learn_loaded_still_get_their_share_of_threads(
        tmp_path):
    """The driver loads scikit-learn's OpenMP before it forks the forkserver: each
    worker inherits it and still caps it (and BLAS) at its share of the cores."""
    from runner.orchestration.native_threads import available_cpus

    share = max(1, available_cpus() // 2)
    (tmp_path / "pool_stages.py").write_text(THREAD_STAGES)
    manifest = {"pipelines": {"pools": {"context": "runner.context:Context",
                                        "steps": ["pools.first", ["pools.a", "pools.b"]]}},
                "stages": {"pools.first": "pool_stages:first", "pools.a": "pool_stages:a",
                           "pools.b": "pool_stages:b"}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    doc = run_cli("run", "pools", "-m", "manifest.json", "-e", "processes", "--json",
                  "--run-id", "pools-1", cwd=tmp_path)
    assert doc["status"] == "succeeded"
    got = {n: json.loads((tmp_path / f"pools-{n}.json").read_text())
           for n in ("first", "a", "b")}
    assert got["first"]["loaded"]  # in the driver, before its first step
    for name in ("a", "b"):
        assert got[name]["pid"] != got["first"]["pid"]
        assert got[name]["loaded"]
        assert got[name]["env"] == str(share)
        assert got[name]["blas"] == got[name]["openmp"] == [share], got[name]


SHADOWED = '''
import os

from runner import Context, stage


@stage("shadow.{n}", cache=False)
def who_{n}(ctx: Context) -> Context:
    ctx.log("{copy} copy, PYTHONSAFEPATH=" + str(os.environ.get("PYTHONSAFEPATH")))
    return ctx
'''


def test_a_spawned_forkserver_imports_what_the_driver_imports_not_the_current_folders(
        tmp_path):
    """In a folder that holds another copy of a stage module than the one the driver
    imports (a checkout beside the installed package), the workers of a spawned
    forkserver (``--cache``: started at the first dispatch, threads running) run the
    driver's copy: Python 3.11's forkserver would put the current folder first. What
    the forkserver was spawned with to see to it is not left to the stages."""
    for copy in ("lib", "cwd"):
        (tmp_path / copy).mkdir()
        (tmp_path / copy / "shadowed.py").write_text("".join(
            SHADOWED.format(n=n, copy=copy) for n in ("one", "two")))
    (tmp_path / "manifest.json").write_text(json.dumps({
        "pipelines": {"p": {"steps": [["shadow.one", "shadow.two"]]}},
        "stages": {"shadow.one": "shadowed:who_one", "shadow.two": "shadowed:who_two"}}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "lib"), str(ROOT)])}
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "run", "p", "-m", str(tmp_path / "manifest.json"),
         "-e", "processes", "--cache", "--json", "--artifacts", str(tmp_path / "store")],
        cwd=tmp_path / "cwd", env=env, capture_output=True, text=True, timeout=300,
        check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    workers = {s["pid"] for s in doc["steps"] if s["kind"] == "stage"}
    assert len(workers) >= 1 and proc.stderr.count("Traceback") == 0
    root = ArtifactStore(str(tmp_path / "store"))
    last = read_run(root, doc["run_id"]).checkpoints[-1]
    context = load_checkpoint(root, doc["run_id"], last,
                              types={"runner.context:Context": Context})
    assert context.audit_trail == ["lib copy, PYTHONSAFEPATH=None"] * 2
