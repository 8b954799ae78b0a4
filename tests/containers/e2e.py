"""Run the pods we generate in real containers, as a kubelet would, and check their runs.

    python -m tests.containers.e2e --docker /usr/bin/docker --image runner:e2e \\
        [--ray-image runner:e2e-ray] [--user-image runner:e2e-user] --work /tmp/e2e
        [--timeout 600] [--dry-run]

For each pod of ``tests.containers.cases`` (``runner submit alpha.full --dry-run``, the
same with ``--cache`` on a store whose step cache a host run filled, a ``runner
schedule`` CronJob's job template, the chart's GitOps run Job and its helm-test pod):
translate it (``tests.containers.podrun``), stage its files, ``docker run`` it with the
node's folder ``WORK/<case>/store`` at ``/artifacts``, wait for it (``--timeout``, then
``docker stop``), keep its log in ``WORK/<case>/container.log``, remove the container, and
check the run from the host: ``runner runs show --json`` with the pod's key says
``succeeded`` and, for alpha.full, the final weights equal a host run's (on the
host-filled cache, every step a hit). The helm-test pod passes on exit 0. ``--dry-run``
prints each ``docker run`` argv (no engine needed; values are in the client's
environment, never in the argv). A summary table ends the output;
the exit code is 1 when a pod failed, 2 when the objects could not be made or run.
The docker client gets ``DOCKER_HOST`` and the rest of this process's environment.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.containers.cases import CLAIM, ROOT, Case, RenderError, Skip, all_cases
from tests.containers.podrun import ContainerRun, PodRunError, stage, translate

POD_UID = 10001
"""The user our pods run as: owner of the store folder, as a volume's fsGroup would be."""


@dataclass
class Outcome:
    name: str
    image: str
    exit: str
    seconds: float | None
    result: str
    ok: bool | None
    """True passed, False failed, None skipped."""


def _client_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_", "OTEL_"))}


def _host_env(key: str) -> dict[str, str]:
    """What ``runner`` on the host runs with: this checkout first, the pods' key."""
    return {**_client_env(), "RUNNER_ARTIFACT_KEY": key,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")]))}


def prepare(case: Case, work: Path) -> tuple[ContainerRun, Path]:
    """The case's container run, its files staged and its store folder made."""
    folder = work / _slug(case.name)
    shutil.rmtree(folder, ignore_errors=True)
    store = folder / "store"
    store.mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(store, POD_UID, POD_UID)
    else:
        store.chmod(0o777)
    run = translate(case.pod, objects=case.objects, staging=folder / "staging",
                    claims={CLAIM: store}, name=f"podrun-{case.pod['metadata']['name']}")
    stage(run, folder / "staging")
    return run, folder


def fill_cache(case: Case, store: Path) -> None:
    """Fill the step cache in ``store`` with a run of the case's pipeline on this host,
    the store then the pod's to write, as a volume's fsGroup makes it."""
    assert case.key is not None and case.pipeline is not None
    env = _host_env(case.key)
    subprocess.run([sys.executable, "-m", "runner.cli", "run", case.pipeline, "--cache",
                    "--run-id", "laptop", "--artifacts", str(store), "-q"], cwd=ROOT,
                   env=env, capture_output=True, timeout=600, check=True)
    for path in [store, *store.rglob("*")]:
        if os.geteuid() == 0:
            os.chown(path, POD_UID, POD_UID, follow_symlinks=False)
        elif not path.is_symlink():
            path.chmod(0o777 if path.is_dir() else 0o666)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60]


def run_container(run: ContainerRun, docker: str, *, folder: Path,
                  timeout: float) -> tuple[int | None, float]:
    """(exit code or None on timeout, seconds): ``docker run --detach``, ``docker wait``,
    the log kept, the container removed whatever happens."""
    env = run.client_env(_client_env())
    subprocess.run([docker, "rm", "-f", run.name], capture_output=True, timeout=60,
                   check=False, env=_client_env())
    started = time.monotonic()
    made = subprocess.run(run.argv(docker, detach=True), env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    if made.returncode != 0:
        (folder / "container.log").write_text(made.stderr)
        raise RuntimeError(f"docker run exited {made.returncode}: {made.stderr.strip()}")
    code: int | None = None
    try:
        waited = subprocess.run([docker, "wait", run.name], capture_output=True, text=True,
                                timeout=timeout, check=False, env=_client_env())
        code = int(waited.stdout.strip()) if waited.stdout.strip().isdigit() else None
    except subprocess.TimeoutExpired:
        subprocess.run([docker, "stop", "-t", str(run.stop_timeout), run.name],
                       capture_output=True, timeout=run.stop_timeout + 60, check=False,
                       env=_client_env())
    finally:
        seconds = time.monotonic() - started
        with (folder / "container.log").open("wb") as log:
            subprocess.run([docker, "logs", run.name], stdout=log, stderr=subprocess.STDOUT,
                           timeout=60, check=False, env=_client_env())
        subprocess.run([docker, "rm", "-f", run.name], capture_output=True, timeout=60,
                       check=False, env=_client_env())
    return code, seconds


def runs_show(store: Path, run_id: str, key: str) -> dict[str, Any]:
    import json

    env = _host_env(key)
    done = subprocess.run([sys.executable, "-m", "runner.cli", "runs", "show", run_id,
                           "--artifacts", str(store), "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"runner runs show {run_id}: {done.stderr.strip()[-300:]}")
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def final_weights(store: Path, run_id: str, key: str) -> Any:
    """The ``weights`` of the run's last checkpoint, verified with ``key``."""
    from runner.artifacts import load_field, read_index, read_run
    from runner.artifacts.store import ArtifactStore

    before = os.environ.get("RUNNER_ARTIFACT_KEY")
    os.environ["RUNNER_ARTIFACT_KEY"] = key
    try:
        root = ArtifactStore(str(store))
        doc = read_run(root, run_id)
        index = read_index(root, run_id, doc.checkpoints[-1].dir)
        return load_field(root, run_id, index.fields["weights"])
    finally:
        if before is None:
            os.environ.pop("RUNNER_ARTIFACT_KEY", None)
        else:
            os.environ["RUNNER_ARTIFACT_KEY"] = before


def host_reference(work: Path, key: str) -> Any:
    """alpha.full's weights from a run on this host (the same code, outside any image)."""
    store = work / "host-store"
    shutil.rmtree(store, ignore_errors=True)
    env = _host_env(key)
    subprocess.run([sys.executable, "-m", "runner.cli", "run", "alpha.full", "--run-id",
                    "host-reference", "--artifacts", str(store), "--json"], cwd=ROOT,
                   env=env, capture_output=True, timeout=600, check=True)
    return final_weights(store, "host-reference", key)


def judge(case: Case, code: int | None, folder: Path, reference: Any) -> tuple[bool, str]:
    if code is None:
        return False, "timed out (stopped)"
    if case.run_id is None:
        return code == 0, "exit 0" if code == 0 else f"exit {code}"
    assert case.key is not None
    try:
        doc = runs_show(folder / "store", case.run_id, case.key)
    except RuntimeError as exc:
        return False, str(exc)
    status = doc["status"]
    if status != "succeeded" or code != 0:
        return False, f"run {case.run_id} {status}, exit {code}"
    if case.laptop_cache:
        steps = [c for c in doc["checkpoints"] if c["kind"] == "step"]
        ran = [c["name"] for c in steps if not c["cached"]]
        if not steps or ran:
            return False, (f"run {case.run_id} succeeded but ran {len(ran)} of {len(steps)} "
                           f"steps the laptop's run had cached: {', '.join(ran)}")
    if not case.weights:
        return True, f"run {case.run_id} succeeded"
    weights = final_weights(folder / "store", case.run_id, case.key)
    if weights.equals(reference):
        hits = "every step from the laptop's cache; " if case.laptop_cache else ""
        return True, f"run {case.run_id} succeeded; {hits}weights identical to the host's"
    gap = float((weights - reference).abs().max())
    return False, f"run {case.run_id} succeeded; weights differ from the host's (max {gap:g})"


def outcome(case: Case, code: int | None, seconds: float | None, folder: Path, reference: Any,
            *, gaps: Sequence[str] = ()) -> Outcome:
    """A run case's row: its exit and result judged, settings the runtime lost named,
    and where its log is when it failed."""
    ok, result = judge(case, code, folder, reference)
    if gaps:
        ok, result = False, f"{result}; hardening lost: {'; '.join(gaps)}"
    if not ok:
        result += f" (log: {folder / 'container.log'})"
    return Outcome(case.name, case.image, "-" if code is None else str(code), seconds, result,
                   ok)


def summary(outcomes: list[Outcome]) -> str:
    rows = [("object", "image", "exit", "seconds", "result")] + [
        (o.name, o.image, o.exit, "" if o.seconds is None else f"{o.seconds:.1f}",
         ("PASS " if o.ok else "FAIL " if o.ok is False else "") + o.result)
        for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True))
                     + "  " + r[4] for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.containers.e2e",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--docker", default="docker", help="the docker CLI to call")
    parser.add_argument("--image", required=True, help="the runner image (in the engine)")
    parser.add_argument("--ray-image", help="the image with the ray extra")
    parser.add_argument("--user-image", help="an image FROM ours with examples/user-image's "
                        "stages installed")
    parser.add_argument("--work", required=True, type=Path, help="a folder for the runs")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pod")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the docker argv of each pod; run nothing")
    args = parser.parse_args(argv)
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    try:
        cases = all_cases(args.image, args.ray_image, key=key, work=work,
                          user_image=args.user_image)
    except (RenderError, PodRunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    outcomes: list[Outcome] = []
    reference = None
    for case in cases:
        if isinstance(case, Skip):
            outcomes.append(Outcome(case.name, "-", "-", None, f"SKIP {case.reason}", None))
            continue
        try:
            run, folder = prepare(case, work)
        except PodRunError as exc:
            outcomes.append(Outcome(case.name, case.image, "-", None, f"refused: {exc}",
                                    False))
            continue
        if args.dry_run:
            print(f"# {case.name}\n{shlex.join(run.argv(args.docker))}\n", flush=True)
            outcomes.append(Outcome(case.name, case.image, "-", None, "DRY RUN (not run)", None))
            continue
        if case.weights and reference is None:
            reference = host_reference(work, key)
        if case.laptop_cache:
            fill_cache(case, folder / "store")
        print(f"running {case.name} ({run.name}) ...", file=sys.stderr, flush=True)
        try:
            code, seconds = run_container(run, args.docker, folder=folder,
                                          timeout=args.timeout)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            outcomes.append(Outcome(case.name, case.image, "-", None, str(exc), False))
            continue
        outcomes.append(outcome(case, code, seconds, folder, reference))
    print(summary(outcomes), flush=True)
    return 1 if any(o.ok is False for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
