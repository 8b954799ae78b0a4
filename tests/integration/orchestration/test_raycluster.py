"""The Ray test helpers (``tests.raycluster``) against a real Ray, on loopback only.

* the session's two-node cluster: a driver (a subprocess: Ray never runs in the
  pytest process) sees both nodes alive, a task asking for ``node2`` runs on the
  second node, and every socket any cluster process listens on -- GCS, raylets,
  object managers, agents, metrics, workers, the driver -- is on 127.0.0.0/8;
* ``local_ray_env``: ``ray.init()`` with no address in a subprocess starts a
  single-node Ray that listens on 127.0.0.0/8 only, keeps its files in the given
  folder and leaves no process behind after ``ray.shutdown()``.

Skipped, with the reason, where Ray is not installed.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import psutil
import pytest

from tests.raycluster import (
    LOOPBACK,
    MAX_TEMP_DIR_LEN,
    RayCluster,
    child_env,
    local_ray_env,
    ray_cluster_fixture,  # noqa: F401 -- registers the session fixture "ray_cluster"
    require_ray,
    short_temp_dir,
)

pytestmark = pytest.mark.integration

# Shared by the driver subprocesses: every inet socket of some processes, by pid.
SOCKETS = r'''
import psutil

def sockets(pids):
    """{pid: {"name", "listen": [[ip, port]], "peers": [[ip, port]]}} (vanished pids left out)."""
    out = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            name = proc.name()
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        out[pid] = {
            "name": name,
            "listen": [[c.laddr.ip, c.laddr.port] for c in conns if c.status == psutil.CONN_LISTEN],
            "peers": [[c.raddr.ip, c.raddr.port] for c in conns if c.raddr],
        }
    return out
'''

CLUSTER_DRIVER = SOCKETS + r'''
import json, os, sys
import ray

launchers = [psutil.Process(int(pid)) for pid in sys.argv[1].split(",")]
ray.init()  # RAY_ADDRESS and the token come from the environment

def where():
    ctx = ray.get_runtime_context()
    return {"node_id": ctx.get_node_id(), "ip": ray.util.get_node_ip_address(),
            "pid": os.getpid()}

on_node2 = ray.remote(resources={"node2": 1})(where)
plain = ray.remote(where)
node2_result, plain_result = ray.get([on_node2.remote(), plain.remote()])

# while this driver holds its workers: every process of the cluster, and this one
pids = [p.pid for root in launchers for p in [root, *root.children(recursive=True)]]
print(json.dumps({
    "nodes": [{"id": n["NodeID"], "ip": n["NodeManagerAddress"], "alive": n["Alive"],
               "resources": n["Resources"]} for n in ray.nodes()],
    "node2_task": node2_result,
    "plain_task": plain_result,
    "driver": {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()},
    "sockets": sockets([*pids, os.getpid()]),
}))
ray.shutdown()
'''

LOCAL_DRIVER = SOCKETS + r'''
import json, os, time
import ray

began = time.monotonic()
ray.init(include_dashboard=False, num_cpus=1)  # no address: a new local Ray
init_s = time.monotonic() - began

@ray.remote
def where():
    return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}

task = ray.get(where.remote())
me = psutil.Process()
children = me.children(recursive=True)
report = {
    "init_s": init_s,
    "task": task,
    "nodes": [{"ip": n["NodeManagerAddress"], "alive": n["Alive"]} for n in ray.nodes()],
    "session_dir": ray._private.worker._global_node.get_session_dir_path(),
    "children": {p.pid: p.name() for p in children},
    "sockets": sockets([me.pid, *(p.pid for p in children)]),
}
began = time.monotonic()
ray.shutdown()
report["shutdown_s"] = time.monotonic() - began
def running(proc):
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

deadline = time.monotonic() + 30
while True:
    left = [p.pid for p in children if running(p)]
    if not left or time.monotonic() > deadline:
        break
    time.sleep(0.1)
report["left_after_shutdown"] = left
report["gone_s"] = time.monotonic() - began
print(json.dumps(report))
'''


def on_loopback(ip: str) -> bool:
    """True for 127.0.0.0/8, also written as an IPv4-mapped IPv6 address (::ffff:127.x)."""
    addr = ipaddress.ip_address(ip.partition("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return isinstance(addr, ipaddress.IPv4Address) and addr in LOOPBACK


def off_loopback(sockets: dict[str, dict], key: str) -> list[str]:
    return [f"{info['name']} (pid {pid}) {key} {ip}:{port}"
            for pid, info in sockets.items() for ip, port in info[key] if not on_loopback(ip)]


def listening(pids: Iterable[int]) -> list[tuple[int, str, str, int]]:
    """(pid, name, ip, port) of every listening inet socket of ``pids``, seen from here."""
    found = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            name = proc.name()
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        found += [(pid, name, c.laddr.ip, c.laddr.port) for c in conns
                  if c.status == psutil.CONN_LISTEN]
    return found


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run_json(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.returncode == 0, f"driver failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_on_loopback_helper() -> None:
    assert on_loopback("127.0.0.1") and on_loopback("127.0.0.3")
    assert on_loopback("::ffff:127.0.0.1")
    assert not on_loopback("0.0.0.0") and not on_loopback("::")
    assert not on_loopback("::1") and not on_loopback("192.0.2.2")


def test_local_ray_env_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "192.0.2.1:6379")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-ours")
    short = tmp_path if len(str(tmp_path)) <= MAX_TEMP_DIR_LEN else None
    with short_temp_dir("rayv-") as tmp:
        env = child_env(local_ray_env(tmp))
        assert "RAY_AUTH_TOKEN" not in env
        assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
        assert env["RAY_TMPDIR"] == str(tmp) and env["RAY_ADDRESS"] == ""
        assert env["RAY_AUTH_MODE"] == "token"
        token = Path(env["RAY_AUTH_TOKEN_PATH"])
        assert token.parent == tmp and len(token.read_text()) == 64
        assert token.stat().st_mode & 0o077 == 0
    if short is None:  # pytest's folders are too long for Ray's unix sockets
        with pytest.raises(ValueError, match="too long"):
            local_ray_env(tmp_path)


def test_two_nodes_on_loopback(ray_cluster: RayCluster) -> None:
    cluster = ray_cluster
    assert cluster.running()
    launchers = ",".join(map(str, cluster.launcher_pids()))
    report = run_json(cluster.run_driver(CLUSTER_DRIVER, launchers, timeout=180))

    alive = [n for n in report["nodes"] if n["alive"]]
    assert sorted(n["id"] for n in alive) == sorted([cluster.head_node_id,
                                                     cluster.worker_node_id])
    by_id = {n["id"]: n for n in alive}
    assert by_id[cluster.worker_node_id]["resources"].get("node2") == 4
    assert "node2" not in by_id[cluster.head_node_id]["resources"]
    assert all(on_loopback(n["ip"]) for n in alive), alive
    assert on_loopback(cluster.head_ip) and on_loopback(cluster.worker_ip)
    assert cluster.address == f"{cluster.head_ip}:{cluster.port}"

    node2, plain = report["node2_task"], report["plain_task"]
    assert node2["node_id"] == cluster.worker_node_id
    assert plain["node_id"] in by_id
    assert on_loopback(node2["ip"]) and on_loopback(plain["ip"])

    sockets = report["sockets"]  # the workers are below the launchers: stopping ends them
    assert {str(node2["pid"]), str(plain["pid"]), str(report["driver"]["pid"])} <= set(sockets)
    assert off_loopback(sockets, "listen") == []
    assert off_loopback(sockets, "peers") == []  # nothing talks to the machine's address
    ports = {port for info in sockets.values() for _, port in info["listen"]}
    assert cluster.port in ports  # the GCS


def test_cluster_processes_listen_on_loopback_only(ray_cluster: RayCluster) -> None:
    pids = ray_cluster.pids()
    names = {psutil.Process(pid).name() for pid in pids if psutil.pid_exists(pid)}
    assert {"gcs_server", "raylet"} <= names, names
    found = listening(pids)
    assert found, "no listening socket found: psutil cannot see them here?"
    assert [f for f in found if not on_loopback(f[2])] == []
    assert (ray_cluster.port in {port for *_, port in found})
    raylets = {pid for pid, name, *_ in found if name == "raylet"}
    assert len(raylets) == 2  # both nodes' raylets listen (node manager, object manager)


def test_local_ray_env_single_node_on_loopback() -> None:
    require_ray()
    with short_temp_dir("rayl-") as tmp:
        env = child_env(local_ray_env(tmp))
        done = subprocess.run([sys.executable, "-c", LOCAL_DRIVER], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=240, check=False)
        report = run_json(done)

        assert [n["ip"] for n in report["nodes"]] == ["127.0.0.1"]
        assert report["session_dir"].startswith(f"{tmp}/ray/session_")
        names = set(report["children"].values())
        assert {"gcs_server", "raylet"} <= names, names
        assert str(report["task"]["pid"]) in report["children"]
        sockets = report["sockets"]
        assert any(info["listen"] for info in sockets.values())
        assert off_loopback(sockets, "listen") == []
        assert off_loopback(sockets, "peers") == []
        assert report["left_after_shutdown"] == []

        # and nothing of it is left on the machine once the driver has exited
        deadline = time.monotonic() + 10
        while True:
            left = [pid for pid in map(int, report["children"]) if running(pid)]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert left == []
        using_tmp = [p.pid for p in psutil.process_iter(["cmdline"])
                     if str(tmp) in " ".join(p.info["cmdline"] or ())]
        assert using_tmp == []
