"""The chart's pods (its GitOps run Job and its helm-test pod, as Helm renders them) in
``docker run`` terms, and the container end-to-end driver's ``--dry-run``: every pod we
generate translates, hardened, with no value in any argv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("kmock", reason="kmock (the Kubernetes API emulator) is not installed")
pytest.importorskip("helm_sdkpy", reason="helm_sdkpy is not installed")

from runner.k8s.builders import ARTIFACTS_MOUNT
from tests.containers.cases import CLAIM, chart_key, render_chart
from tests.containers.objects import pod_of
from tests.containers.podrun import translate

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
IMAGE = "runner:e2e"
HARDENED = {"--network": "none", "--user": "10001:10001", "--group-add": "10001",
            "--cap-drop": "ALL", "--security-opt": "no-new-privileges",
            "--memory": str(2 * 2**30), "--stop-timeout": "30"}


@pytest.fixture(scope="module")
def chart(tmp_path_factory):
    return render_chart(IMAGE, runs=[{"name": "e2e", "pipeline": "alpha.full",
                                      "runId": "chart-e2e", "params": {"note": "a$$b$(X)"}}],
                        work=tmp_path_factory.mktemp("chart"))


def hardened(argv: list[str]) -> None:
    for flag, value in HARDENED.items():
        assert argv[argv.index(flag) + 1] == value, flag
    assert "--read-only" in argv


def test_the_charts_run_job_translates_with_its_key_and_manifest(chart, tmp_path):
    (made,) = [o for o in chart if o["kind"] == "Job"]
    run = translate(pod_of(made), objects=chart, staging=tmp_path,
                    claims={CLAIM: tmp_path / "store"})
    argv = run.argv()
    hardened(argv)
    key = chart_key(chart)
    assert run.env["RUNNER_ARTIFACT_KEY"] == key and key not in " ".join(argv)
    assert f"type=bind,src={tmp_path}/store,dst={ARTIFACTS_MOUNT}" in argv  # the claim
    assert run.env["RUNNER_ARTIFACTS"] == ARTIFACTS_MOUNT
    assert run.env["RUNNER_RUN_ID"] == "chart-e2e"
    assert list(run.command)[:3] == ["run", "alpha.full", "--run-id"]
    assert "note=a$$b$(X)" in run.command  # the chart's escape undone by the expansion
    assert f"type=bind,src={tmp_path}/volumes/manifest,dst=/etc/runner,readonly" in argv
    assert any(s.path == "volumes/manifest/manifest.json" for s in run.staged)


def test_the_helm_test_pod_translates(chart, tmp_path):
    (pod,) = [o for o in chart if o["kind"] == "Pod"]
    run = translate(pod_of(pod), objects=chart, staging=tmp_path)
    hardened(run.argv())
    assert list(run.command) == ["validate", "--manifest", "/etc/runner/manifest.json"]
    assert "RUNNER_ARTIFACT_KEY" not in run.env  # the key only in run pods


def test_the_driver_dry_run_prints_every_pods_docker_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    done = subprocess.run([sys.executable, "-m", "tests.containers.e2e", "--docker",
                           "/usr/bin/docker", "--image", IMAGE, "--work", str(tmp_path),
                           "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    runs = [line for line in done.stdout.splitlines()
            if line.startswith("/usr/bin/docker run ")]
    assert len(runs) == 5, done.stdout
    for line in runs:
        hardened(line.split())
        assert "RUNNER_ARTIFACT_KEY=" not in line
    assert sum(line.endswith(" --cache") for line in runs) == 1  # the laptop's cache case
    for words in ("submit alpha.full (Job)", "submit alpha.full --cache (Job), a laptop's",
                  "schedule alpha.full (CronJob)",
                  "chart GitOps run alpha.full (Job)", "chart helm test (Pod)",
                  "SKIP no --ray-image given", "SKIP its Job waits for a KubeRay head"):
        assert words in done.stdout
    assert (tmp_path / "submit-alpha-full--job/staging/volumes/manifest/manifest.json").exists()
