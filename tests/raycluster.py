"""A real Ray for the tests, on the loopback interface only.

Two things, both bound to 127.0.0.1 and nothing else:

* :func:`local_ray_env` -- the variables a process needs so that its own
  ``ray.init()`` (no address) starts a local single-node Ray whose every
  listener is on 127.0.0.1, with its temp files under a given folder::

      env = child_env(local_ray_env(tmp))     # tmp: a *short* path, see below
      subprocess.run([sys.executable, "-c", "import ray; ray.init(include_dashboard=False)..."],
                     env=env)

* :class:`RayCluster` -- a head and a second node (with a custom resource
  ``"node2"``) started on this machine, for drivers in subprocesses::

      with RayCluster() as cluster:
          cluster.run_driver("import ray; ray.init(); print(len(ray.nodes()))")

  and the session fixture ``ray_cluster`` (:func:`ray_cluster_fixture`) that
  shares one such cluster per test session.

What Ray (2.60, Linux) does, and why the helpers look the way they do:

* Ray's C++ servers (GCS, raylet, object manager, core workers) and its Python
  agents listen on 127.0.0.1 only when the node's IP is literally ``127.0.0.1``;
  for any other address -- ``127.0.0.2`` included -- they
  listen on all interfaces (``*`` / ``0.0.0.0``). A node IP of 127.0.0.1 is
  replaced by the machine's network address unless
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which in turn makes ``ray start``
  refuse a second node. So both nodes here are started through Ray's own node
  API (``ray._private.node.Node``, what ``ray start`` and
  ``ray.cluster_utils.Cluster`` use) by a small launcher -- this file run as a
  script -- and both have the IP 127.0.0.1: they are told apart by node id and
  by the ``node2`` resource, not by IP.
* Token authentication is on by default: every process (nodes and drivers) gets
  ``RAY_AUTH_MODE=token`` and the same ``RAY_AUTH_TOKEN_PATH`` (a file in the
  test's folder); nothing is read from or written to ``~/.ray``.
* Unix sockets live under the temp folder and their paths must stay under 108
  bytes, hence short folders (``/tmp/rayt-XXXXXXXX``), see :func:`short_temp_dir`.
* Other fixed ports a second Ray on the machine would share are moved to free
  ones: the autoscaler's and the dashboard's metrics servers (44217, 44227) by
  environment, the dashboard agent's HTTP port (52365) by the launcher -- a
  bare ``ray.init()`` keeps 52365, which costs it a few seconds of retries (not
  a failure) when another Ray holds it.

Nothing here imports ``ray`` into the calling (pytest) process: Ray emits
warnings and starts threads there otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import pytest

HOST = "127.0.0.1"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
ROOT = Path(__file__).resolve().parents[1]

#: Longest ``RAY_TMPDIR`` Ray's unix sockets fit under (sun_path holds 107 bytes):
#: ``<dir>/ray/session_YYYY-MM-DD_hh-mm-ss_uuuuuu_<pid, up to 7>/sockets/plasma_store``
#: is ``len(dir) + 68``.
MAX_TEMP_DIR_LEN = 39

#: Environment variables from the caller's environment a Ray child never inherits
#: (besides every ``RAY_*``): they would point it at another cluster or port.
_UNSET = ("AUTOSCALER_METRIC_PORT", "DASHBOARD_METRIC_PORT", "http_proxy", "https_proxy",
          "all_proxy", "grpc_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "GRPC_PROXY")

_DRIVER_TIMEOUT = 120.0
#: What the GCS logs (gcs_server.err) when it cannot listen on its port.
GCS_BIND_FAILED = "Failed to start the grpc server"


# ---------------------------------------------------------------- availability


@functools.cache
def _probe() -> tuple[str | None, str]:
    """(Ray's version, or None; why not) -- asked of a subprocess, never imported here."""
    if not sys.platform.startswith("linux"):
        return None, f"these helpers need Linux (loopback-only Ray), not {sys.platform}"
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return None, "ray is not installed (pip install 'runner[ray]')"
    with short_temp_dir("rayp-") as tmp:
        try:
            done = subprocess.run(
                [sys.executable, "-c", "import ray; print(ray.__version__)"],
                capture_output=True, text=True, timeout=120, env=child_env(local_ray_env(tmp)),
                cwd=tmp, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"cannot import ray: {exc}"
    if done.returncode != 0:
        return None, f"cannot import ray: {(done.stderr or done.stdout).strip()[-500:]}"
    return done.stdout.strip().splitlines()[-1], ""


def ray_unavailable_reason() -> str | None:
    """Why Ray cannot be used by these helpers, or None when it can."""
    version, reason = _probe()
    return None if version is not None else reason


def ray_version() -> str | None:
    """The installed Ray's version (from a subprocess), or None."""
    return _probe()[0]


def require_ray() -> str:
    """Ray's version, or skip the calling test with the reason Ray cannot be used."""
    version, reason = _probe()
    if version is None:
        pytest.skip(f"ray unavailable: {reason}")
    return version


# ---------------------------------------------------------------- environments


@contextlib.contextmanager
def short_temp_dir(prefix: str = "rayt-") -> Iterator[Path]:
    """A fresh folder with a path short enough for Ray's unix sockets, removed afterwards."""
    path = Path(_mkdtemp(prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _mkdtemp(prefix: str) -> str:
    """``mkdtemp`` in the temp folder if that one is short enough (with room for
    ``/node2``), else in /tmp."""
    base = tempfile.gettempdir()
    if len(os.path.join(base, prefix)) + 8 + len("/node2") > MAX_TEMP_DIR_LEN:
        base = "/tmp"
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def _check_temp_dir(path: Path) -> None:
    if len(str(path)) > MAX_TEMP_DIR_LEN:
        raise ValueError(
            f"{path} is too long for Ray's unix sockets ({len(str(path))} > "
            f"{MAX_TEMP_DIR_LEN} characters): use tests.raycluster.short_temp_dir()")


def _write_token(path: Path) -> None:
    """A random token, readable by this user only (what ``ray get-auth-token`` makes)."""
    if path.exists():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))


def _common_env(tmp: Path, token: Path) -> dict[str, str]:
    return {
        # 127.0.0.1 stays 127.0.0.1 (not the machine's address): loopback-only listeners
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        # temp files, sockets and the "current cluster" file under tmp
        "RAY_TMPDIR": str(tmp),
        # the autoscaler's and the dashboard's metrics servers: any free port, not
        # the fixed 44217 / 44227 another Ray on this machine may hold
        "AUTOSCALER_METRIC_PORT": "0",
        "DASHBOARD_METRIC_PORT": "0",
    }


def local_ray_env(tmp: Path) -> dict[str, str]:
    """Variables for a process whose ``ray.init()`` (no address) starts a loopback-only Ray.

    Every listener of that Ray (GCS, raylet, object manager, agents, metrics, workers)
    is on 127.0.0.1; its temp files (sessions, logs, sockets) go under ``tmp/ray``
    and the auth token is ``tmp/auth_token`` (written here if missing). ``tmp`` must
    be short (see :func:`short_temp_dir`). Pass ``include_dashboard=False`` to
    ``ray.init`` too: the dashboard doubles the start time (nine more processes,
    a fixed port 8265). Apply on top of :func:`child_env`, which drops inherited
    ``RAY_*`` variables (an inherited ``RAY_AUTH_TOKEN`` or ``RAY_ADDRESS``
    would win).
    """
    tmp = Path(tmp)
    _check_temp_dir(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    token = tmp / "auth_token"
    _write_token(token)
    env = _common_env(tmp, token)
    env["RAY_ADDRESS"] = ""  # empty = unset: start a new local Ray, never join one
    return env


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``RAY_*``/proxy variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAY_") and k not in _UNSET}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(extra or {})
    return env


# ---------------------------------------------------------------- processes


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _processes() -> dict[int, tuple[int, int, int]]:
    """{pid: (ppid, pgid, start time)} of every live (not zombie) process, from /proc."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if fields[0] not in ("Z", "X"):
            found[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[19]))
    return found


def _family(leader: int, table: dict[int, tuple[int, int, int]] | None = None,
            ) -> dict[int, int]:
    """{pid: start time} of ``leader``, its descendants and its process group's members.

    Ray puts each worker process in a process group of its own, so the group alone
    misses them; a process whose parent died is re-parented and leaves the tree,
    which the launcher prevents by being a child subreaper.
    """
    table = _processes() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    family = {pid for pid, (_, pgid, _) in table.items() if pgid == leader}
    if leader in table:
        family.add(leader)
    todo = list(family)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in family:
                family.add(child)
                todo.append(child)
    return {pid: table[pid][2] for pid in family if pid in table}


def _alive(snapshot: dict[int, int]) -> dict[int, int]:
    """The processes of ``snapshot`` still running (same pid *and* start time)."""
    table = _processes()
    return {pid: t for pid, t in snapshot.items() if pid in table and table[pid][2] == t}


def _end(snapshot: dict[int, int], timeout: float) -> dict[int, int]:
    """TERM what is left of ``snapshot``, wait, then KILL; returns what survived."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        left = _alive(snapshot)
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = _alive(left)
        if not left:
            return {}
    return _alive(snapshot)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class _Node:
    """One launcher process (this file run as a script) and the Ray node it runs."""

    def __init__(self, name: str, spec: dict[str, Any], workdir: Path) -> None:
        self.name = name
        self.spec = spec
        self.ready_file = workdir / f"{name}.ready.json"
        self.out_file = workdir / f"{name}.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self._out: IO[bytes] | None = None

    def launch(self, env: Mapping[str, str]) -> None:
        self.ready_file.unlink(missing_ok=True)
        self._out = self.out_file.open("ab")
        spec = {**self.spec, "ready_file": str(self.ready_file)}
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-u", str(Path(__file__).resolve()), "node", json.dumps(spec)],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
            env=dict(env), cwd=self.spec["temp_dir"], start_new_session=True)

    def poll_ready(self) -> bool:
        """True once the launcher reported the node alive; raises if it died first."""
        if self.ready_file.exists():
            self.info = json.loads(self.ready_file.read_text())
            return True
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise _LaunchError(self, f"exited with {self.proc.returncode} before it was ready")
        if self.spec["head"] and GCS_BIND_FAILED in self._session_log("gcs_server.err"):
            # Ray itself would wait ~40s for the dead GCS before it gives up
            raise _LaunchError(self, f"GCS could not listen on {HOST}:{self.spec['port']}")
        return False

    def _session_log(self, name: str) -> str:
        for path in Path(self.spec["temp_dir"]).glob(f"session_2*/logs/{name}"):
            with contextlib.suppress(OSError):
                return path.read_text(errors="replace")
        return ""

    def log_tail(self) -> str:
        parts = [f"--- {self.name} launcher output ({self.out_file}):\n{_tail(self.out_file)}"]
        logs = sorted(Path(self.spec["temp_dir"]).glob("session_*/logs"))
        for log in (logs[-1:] if logs else []):
            for name in ("gcs_server.err", "raylet.err", "raylet.out", "dashboard_agent.err"):
                text = _tail(log / name, 10)
                if text.strip():
                    parts.append(f"--- {self.name} {name}:\n{text}")
        return "\n".join(parts)

    def request_stop(self) -> None:
        """SIGTERM a launcher whose node is up (it shuts the node down); SIGKILL one still
        starting (it may sit in Ray's C++ code for a minute, deaf to signals); the
        processes it started then go with :meth:`finish_stop`."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM if self.info else signal.SIGKILL)

    def pids(self) -> dict[int, int]:
        """{pid: start time} of the launcher and every process of its node (workers too)."""
        return {} if self.proc is None else _family(self.proc.pid)

    def finish_stop(self, timeout: float, snapshot: dict[int, int]) -> None:
        """Wait for the launcher; then TERM/KILL whatever of ``snapshot`` outlived it."""
        proc = self.proc
        if proc is not None:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            snapshot = {**snapshot, **_family(proc.pid)}
            snapshot.pop(proc.pid, None)
            left = _end(snapshot, 5.0)
            if left:
                raise RuntimeError(f"ray {self.name} node: processes {sorted(left)} survive "
                                   "SIGKILL")
        if self._out is not None:
            self._out.close()
            self._out = None


class _LaunchError(RuntimeError):
    def __init__(self, node: _Node, message: str) -> None:
        super().__init__(f"ray {node.name} node {message}")
        self.node = node


class RayCluster:
    """A head and a second node on 127.0.0.1, each run by a launcher process of its own.

    The head has ``head_cpus`` CPUs and the custom ``head_resources``
    (``{"head": 4}``); the second node ``worker_cpus`` CPUs and the custom
    ``worker_resources`` (``{"node2": 4}``), so a task asking for
    ``resources={"node2": 1}`` runs there, one asking for ``{"head": 1}`` on the head.
    Drivers connect with :meth:`env` (``RAY_ADDRESS`` and the auth variables), e.g.
    through :meth:`run_driver`.
    Each launcher is the root (and child subreaper) of every process of its node
    and leads a process group; :meth:`stop` asks both launchers to shut their
    nodes down, then TERMs/KILLs whatever of exactly those processes is left
    (recorded pid and start time), and removes the temp folder.
    """

    def __init__(self, *, head_cpus: int = 1, worker_cpus: int = 1,
                 worker_resources: Mapping[str, float] | None = None,
                 head_resources: Mapping[str, float] | None = None,
                 object_store_mb: int = 100, startup_timeout: float = 120.0,
                 stop_timeout: float = 30.0) -> None:
        self.head_cpus = head_cpus
        self.worker_cpus = worker_cpus
        self.worker_resources = dict({"node2": 4} if worker_resources is None
                                     else worker_resources)
        self.head_resources = dict({"head": 4} if head_resources is None else head_resources)
        self.object_store_mb = object_store_mb
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.port = 0
        self.client_port = 0
        self.root: Path | None = None
        self.startup_s: float | None = None
        self.stop_s: float | None = None
        self._head: _Node | None = None
        self._worker: _Node | None = None

    # ---- addresses
    @property
    def head_ip(self) -> str:
        """The head node's IP as Ray reports it (127.0.0.1)."""
        return str(self._head.info.get("ip", HOST)) if self._head else HOST

    @property
    def worker_ip(self) -> str:
        """The second node's IP as Ray reports it (127.0.0.1: the same host as the head)."""
        return str(self._worker.info.get("ip", HOST)) if self._worker else HOST

    @property
    def address(self) -> str:
        """The GCS address, ``127.0.0.1:PORT``: the value for ``RAY_ADDRESS``."""
        return f"{self.head_ip}:{self.port}"

    @property
    def client_address(self) -> str:
        """The Ray client address of the head, ``ray://127.0.0.1:PORT`` (also for RAY_ADDRESS)."""
        return f"ray://{self.head_ip}:{self.client_port}"

    @property
    def head_node_id(self) -> str:
        return str(self._head.info.get("node_id", "")) if self._head else ""

    @property
    def worker_node_id(self) -> str:
        return str(self._worker.info.get("node_id", "")) if self._worker else ""

    @property
    def token_path(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "auth_token"

    def env(self) -> dict[str, str]:
        """What a driver process needs to join this cluster (apply over :func:`child_env`)."""
        assert self.root is not None, "cluster not started"
        env = _common_env(self.root / "driver", self.token_path)
        env["RAY_ADDRESS"] = self.address
        return env

    def launcher_pids(self) -> list[int]:
        """The two launcher processes (each the root of one node's processes)."""
        return [n.proc.pid for n in (self._head, self._worker)
                if n is not None and n.proc is not None]

    def pids(self) -> list[int]:
        """Every live process of the cluster: launchers, GCS, raylets, agents, workers."""
        return sorted(pid for n in (self._head, self._worker) if n is not None
                      for pid in n.pids())

    def running(self) -> bool:
        """Both launchers (and so both nodes, which they watch) still run."""
        nodes = [n for n in (self._head, self._worker) if n is not None]
        return len(nodes) == 2 and all(n.proc is not None and n.proc.poll() is None
                                       for n in nodes)

    def log_tail(self) -> str:
        """The end of the launchers' output and of the nodes' main logs."""
        return "\n".join(n.log_tail() for n in (self._head, self._worker) if n is not None)

    # ---- drivers
    def run_driver(self, code: str, *args: str, timeout: float = _DRIVER_TIMEOUT,
                   env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``python -c CODE ARGS...`` with :meth:`env`: its ``ray.init()`` joins this cluster.

        ``env`` adds to (or overrides) the variables; the output is captured as text.
        """
        assert self.root is not None, "cluster not started"
        full = child_env({**self.env(), **(env or {})})
        return subprocess.run([sys.executable, "-c", code, *args], cwd=self.root / "driver",
                              env=full, capture_output=True, text=True, timeout=timeout,
                              check=False)

    # ---- lifecycle
    def __enter__(self) -> RayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spec(self, name: str, **extra: Any) -> dict[str, Any]:
        assert self.root is not None
        temp_dir = self.root / name
        shutil.rmtree(temp_dir, ignore_errors=True)  # nothing of an earlier attempt
        temp_dir.mkdir()
        return {"name": name, "ip": HOST, "temp_dir": str(temp_dir), "parent": os.getpid(),
                "object_store_memory": self.object_store_mb * 1024 * 1024,
                "agent_port": free_port(), "timeout": self.startup_timeout, **extra}

    def start(self) -> RayCluster:
        if self.root is not None:
            raise RuntimeError("ray cluster already started")
        began = time.monotonic()
        self.root = Path(_mkdtemp("rayt-"))
        try:
            (self.root / "driver").mkdir()
            _write_token(self.token_path)
            node_env = child_env(_common_env(self.root, self.token_path))
            deadline = time.monotonic() + self.startup_timeout
            for attempt in range(3):  # the picked GCS port can be taken before the GCS binds it
                self.port = free_port()
                self.client_port = free_port()
                self._head = _Node("head", self._spec(
                    "head", head=True, port=self.port, client_port=self.client_port,
                    num_cpus=self.head_cpus,
                    resources=self.head_resources, expect_nodes=1), self.root)
                self._head.launch(node_env)
                try:
                    self._wait([self._head], deadline)
                    break
                except _LaunchError as exc:
                    busy = GCS_BIND_FAILED in exc.node._session_log("gcs_server.err")
                    if attempt == 2 or not busy:
                        raise
                    snapshot = self._head.pids()
                    self._head.request_stop()
                    self._head.finish_stop(self.stop_timeout, snapshot)
            self._worker = _Node("node2", self._spec(
                "node2", head=False, address=self.address, num_cpus=self.worker_cpus,
                resources=self.worker_resources, expect_nodes=2), self.root)
            self._worker.launch(node_env)
            self._wait([self._worker], deadline)
            self.startup_s = time.monotonic() - began
            return self
        except BaseException as exc:
            tail = self.log_tail()
            self.stop()
            if isinstance(exc, (_LaunchError, TimeoutError)):
                raise RuntimeError(f"{exc}\n{tail}") from exc
            raise

    def _wait(self, nodes: list[_Node], deadline: float) -> None:
        pending = list(nodes)
        while pending:
            pending = [n for n in pending if not n.poll_ready()]
            if not pending:
                return
            if time.monotonic() > deadline:
                names = ", ".join(n.name for n in pending)
                raise TimeoutError(f"ray {names} node(s) not alive after "
                                   f"{self.startup_timeout:.0f}s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop both nodes (in parallel) and everything they started; remove the temp folder."""
        began = time.monotonic()
        nodes = [n for n in (self._worker, self._head) if n is not None]
        snapshots = [n.pids() for n in nodes]  # before the tree comes apart
        errors = []
        try:
            for node in nodes:
                node.request_stop()
            for node, snapshot in zip(nodes, snapshots, strict=True):
                try:
                    node.finish_stop(self.stop_timeout, snapshot)
                except Exception as exc:
                    errors.append(exc)
        finally:
            self._head = self._worker = None
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
            self.stop_s = time.monotonic() - began
        if errors:
            raise errors[0]


_SESSION: dict[str, Any] = {"cluster": None, "holders": 0}


@pytest.fixture(scope="session", name="ray_cluster")
def ray_cluster_fixture() -> Iterator[RayCluster]:
    """A started two-node :class:`RayCluster` for the whole session (or a skip).

    A fixture imported into several test modules is a separate fixture in each, so
    the cluster is kept here: every copy hands out the same one and the last to
    finish stops it. (Registering it once, e.g. ``pytest_plugins`` in the root
    conftest, does the same.)
    """
    require_ray()
    if _SESSION["cluster"] is None:
        _SESSION["cluster"] = RayCluster().start()
    _SESSION["holders"] += 1
    try:
        yield _SESSION["cluster"]
    finally:
        _SESSION["holders"] -= 1
        if _SESSION["holders"] == 0:
            cluster, _SESSION["cluster"] = _SESSION["cluster"], None
            cluster.stop()


# ---------------------------------------------------------------- the launcher
# ``python -I tests/raycluster.py node SPEC_JSON``: start one Ray node in this
# process's children, report it alive, and keep it until SIGTERM.


def _serve_node(spec: dict[str, Any]) -> int:
    import threading

    from ray._private.authentication.authentication_token_setup import (
        ensure_token_if_auth_enabled,
    )
    from ray._private.node import Node
    from ray._private.parameter import RayParams
    from ray._private.state import GlobalState
    from ray._raylet import GcsClientOptions

    began = time.monotonic()
    stop = threading.Event()
    _become_subreaper()
    params = RayParams(
        node_ip_address=spec["ip"], node_name=spec["name"], num_cpus=spec["num_cpus"],
        num_gpus=0, resources=spec["resources"], temp_dir=spec["temp_dir"],
        object_store_memory=spec["object_store_memory"], include_dashboard=False,
        dashboard_agent_listen_port=spec["agent_port"], min_worker_port=0, max_worker_port=0,
        node_manager_port=0, object_manager_port=0)
    if spec["head"]:
        params.gcs_server_port = spec["port"]
        params.ray_client_server_port = spec["client_port"]  # on the node's IP: loopback
    else:
        params.gcs_address = spec["address"]
    ensure_token_if_auth_enabled(None, create_token_if_missing=False)
    node = Node(params, head=spec["head"], shutdown_at_exit=True, spawn_reaper=True)

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    state = GlobalState()
    state._initialize_global_state(GcsClientOptions.create(
        node.gcs_address, None, allow_cluster_id_nil=True, fetch_cluster_id_if_nil=False))
    deadline = time.monotonic() + float(spec["timeout"])
    alive: list[dict[str, Any]] = []
    while not stop.is_set() and os.getppid() == spec["parent"]:
        alive = [n for n in state.node_table() if n["Alive"]]
        if (any(n["NodeID"] == node.node_id for n in alive)
                and len(alive) >= spec["expect_nodes"]):
            break
        if time.monotonic() > deadline:
            print(f"timed out: alive nodes {alive}", flush=True)
            return _shut_down(node, spec, 2, graceful=False)
        time.sleep(0.1)
    else:  # stopped, or orphaned, before the node was up
        return _shut_down(node, spec, 1, graceful=False)
    info = {"node_id": node.node_id, "ip": node.node_ip_address, "gcs_address": node.gcs_address,
            "pid": os.getpid(), "session_dir": node.get_session_dir_path(),
            "alive_nodes": [n["NodeID"] for n in alive], "startup_s": time.monotonic() - began}
    tmp = spec["ready_file"] + ".tmp"
    Path(tmp).write_text(json.dumps(info))
    os.replace(tmp, spec["ready_file"])
    print(f"ray {spec['name']} node alive: {json.dumps(info)}", flush=True)

    while not stop.wait(0.5):
        if os.getppid() != spec["parent"]:
            print("the process that started this node is gone: stopping", flush=True)
            break
        dead = node.dead_processes()
        if dead:
            print(f"ray processes died: {[(kind, p.returncode) for kind, p in dead]}",
                  flush=True)
            return _shut_down(node, spec, 3, graceful=False)
    return _shut_down(node, spec, 0, graceful=True)


def _shut_down(node: Any, spec: dict[str, Any], code: int, *, graceful: bool) -> int:
    """Stop the node's processes, then anything else below this one; ``code``."""
    node.kill_all_processes(check_alive=False, allow_graceful=graceful, wait=True)
    left = _end_descendants()
    print(f"ray {spec['name']} node stopped" + (f"; {left} survive" if left else ""),
          flush=True)
    return code


def _become_subreaper() -> None:
    """Orphans of this process's tree (workers of a dead raylet) are re-parented here."""
    import ctypes

    pr_set_child_subreaper = 36
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def _end_descendants() -> list[int]:
    """End every process below this one (TERM, then KILL), reap them; what survived."""
    family = _family(os.getpid())
    family.pop(os.getpid(), None)
    left = _end(family, 5.0)
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    return sorted(left)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "node":
        sys.exit("usage: python -I tests/raycluster.py node SPEC_JSON")
    sys.exit(_serve_node(json.loads(sys.argv[2])))
