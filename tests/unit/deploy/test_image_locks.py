"""The image's lock files (docker/requirements/*.lock) and how the Dockerfile uses them.

Two builds a week apart must install the same files: every dependency is pinned to one
version with its hashes, the build installs only from the locks (``--require-hashes
--no-deps``, wheels only), and the locks still satisfy what pyproject.toml declares. The
Job image has no Ray (nor GCS); the Ray variant has the same versions plus the cluster's
Ray and gcsfs.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from runner.k8s.builders import RayClusterSpec

ROOT = Path(__file__).resolve().parents[3]
LOCKS = ROOT / "docker" / "requirements"
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
JOB_EXTRAS = ("k8s", "s3")
RAY_EXTRAS = ("ray", "k8s", "s3", "gcs")


def _lock(name: str) -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, hashes) of a lock file in pip's requirements format."""
    text = (LOCKS / f"{name}.lock").read_text().replace("\\\n", " ")
    out: dict[str, tuple[Version, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = shlex.split(line)
        req = Requirement(words[0])
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"{name}.lock: {words[0]} unpinned"
        assert req.marker is None, f"{name}.lock: {words[0]} has a marker: one platform only"
        hashes = [w.removeprefix("--hash=") for w in words[1:] if w.startswith("--hash=")]
        assert len(hashes) == len(words) - 1, f"{name}.lock: {line}"
        out[canonicalize_name(req.name)] = (Version(spec[0].version), hashes)
    return out


def _declared(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


@pytest.mark.parametrize("name", ["build", "job", "ray"])
def test_every_locked_package_is_pinned_with_sha256_hashes(name: str) -> None:
    lock = _lock(name)
    assert lock, f"{name}.lock is empty"
    for package, (_, hashes) in lock.items():
        assert hashes, f"{name}.lock: {package} has no hash (--require-hashes would refuse)"
        for digest in hashes:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), (package, digest)


@pytest.mark.parametrize(("name", "requirements"), [
    ("job", _declared(*JOB_EXTRAS)),
    ("ray", _declared(*RAY_EXTRAS)),
    ("build", [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]),
])
def test_the_lock_satisfies_what_pyproject_declares(
        name: str, requirements: list[Requirement]) -> None:
    """Fails when pyproject.toml gains or bumps a dependency and `make lock` was not run."""
    lock = _lock(name)
    for req in requirements:
        if req.marker is not None and not req.marker.evaluate({"python_version": "3.11",
                                                               "sys_platform": "linux"}):
            continue
        pinned = lock.get(canonicalize_name(req.name))
        assert pinned, f"{name}.lock lacks {req.name}: run `make lock`"
        assert req.specifier.contains(pinned[0], prereleases=True), (
            f"{name}.lock pins {req.name}=={pinned[0]}, pyproject wants {req}: run `make lock`")


def test_the_job_lock_is_the_ray_lock_without_ray_and_gcs() -> None:
    job, ray = _lock("job"), _lock("ray")
    assert "ray" not in job and "gcsfs" not in job
    assert "ray" in ray and "gcsfs" in ray
    for package, (version, _) in job.items():
        assert package in ray, f"{package} is in the Job image but not in the Ray one"
        assert ray[package][0] == version, (package, version, ray[package][0])


def test_the_ray_variant_runs_the_clusters_ray_version() -> None:
    """One pin: RayClusterSpec.ray_version; the lock and the chart's default follow it."""
    pinned = RayClusterSpec().ray_version
    assert _lock("ray")["ray"][0] == Version(pinned), "run `make lock`"
    values = yaml.safe_load((ROOT / "charts" / "runner" / "values.yaml").read_text())
    assert values["rayCluster"]["rayVersion"] == pinned


def _runs(text: str) -> list[str]:
    return [" ".join(r.split()) for r in re.findall(
        r"^RUN (.*?)(?<!\\)$", text, re.M | re.S)]


def test_the_build_installs_only_from_the_locks_with_their_hashes() -> None:
    text = DOCKERFILE.replace("\\\n", " ")
    installs = [c for r in _runs(DOCKERFILE) for c in re.findall(r"pip install[^&;]*", r)]
    locked = [c for c in installs if "-r " in c]
    assert {re.search(r"-r \S*?(\w+)\.lock", c)[1] for c in locked} == {"build", "job", "ray"}
    for command in locked:
        for flag in ("--require-hashes", "--no-deps", "--only-binary=:all:", "--no-cache-dir"):
            assert flag in command, (flag, command)
    # the one install that is not from a lock is runner's own wheel, built here, no deps
    others = [c for c in installs if "-r " not in c]
    assert others and all("--no-deps" in c and "/wheels/" in text for c in others), others
    assert "--no-build-isolation" in text, "the build backend comes from build.lock"
    assert "pip check" in text, "the build proves the locked set is complete and consistent"


def test_the_variant_is_job_by_default_and_ray_adds_the_ray_lock() -> None:
    text = DOCKERFILE.replace("\\\n", " ")
    assert re.findall(r"^ARG VARIANT=(\w+)", DOCKERFILE, re.M) == ["job", "job"]
    assert re.search(r"ray\)\s+/opt/venv/bin/pip install [^;]*ray\.lock", text)
    assert re.search(r"\*\)\s+echo \"VARIANT must be job or ray", text)
    # the shared layer comes before VARIANT is declared, so both variants reuse it
    assert DOCKERFILE.index("job.lock") < DOCKERFILE.index("ARG VARIANT=job")
