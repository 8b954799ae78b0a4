"""``runner submit --parallel`` warns when its image is the default one, which has no Ray."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.k8s.preflight import ray_image_warning

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("image", [
    "runner:0.1.0", "ghcr.io/acme/runner:0.1.0", "registry:5000/runner",
    "ghcr.io/acme/runner@sha256:" + "a" * 64, "runner"])
def test_the_default_variant_is_warned_about_with_the_fix(image: str) -> None:
    warning = ray_image_warning(image)
    assert warning is not None
    assert warning.startswith(f"--parallel with --image {image}: the default runner image "
                              "has no Ray")
    assert "VARIANT=ray" in warning and "--image" in warning and "\n" not in warning


@pytest.mark.parametrize("image", [
    "runner:0.1.0-ray", "ghcr.io/acme/runner:0.1.0-ray@sha256:" + "b" * 64,
    "ghcr.io/acme/runner-ray:1.2", "rayproject/ray:2.60.0", "localhost:5000/runner:e2e-RAY"])
def test_the_ray_variant_is_not_warned_about(image: str) -> None:
    assert ray_image_warning(image) is None


def _submit(pipeline: str, image: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RUNNER_", "TRACEPARENT", "OTEL_", "KUBERNETES_"))}
    env.update(RUNNER_ARTIFACT_KEY="ab" * 32, KUBECONFIG="/nonexistent/kubeconfig",
               COLUMNS="400")
    return subprocess.run([sys.executable, "-m", "runner.cli", "submit", pipeline,
                           "--parallel", "--image", image, "-n", "research",
                           "--artifacts-pvc", "runs", "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180, check=False)


def test_submit_parallel_warns_once_on_the_default_image_and_not_on_the_ray_one() -> None:
    proc = _submit("alpha.parallel", "runner:0.1.0")
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if "has no Ray" in ln]
    assert warnings == ["warning: " + str(ray_image_warning("runner:0.1.0"))]
    assert "kind: RayCluster" in proc.stdout
    proc = _submit("alpha.parallel", "runner:0.1.0-ray")
    assert proc.returncode == 0, proc.stderr
    assert "has no Ray" not in proc.stderr
    # no parallel group, no Ray cluster: the image needs no Ray
    proc = _submit("alpha.full", "runner:0.1.0")
    assert proc.returncode == 0, proc.stderr
    assert "has no Ray" not in proc.stderr
