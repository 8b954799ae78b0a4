"""Helpers for the run-lease tests (importable by subprocesses).

* :func:`held_lease` -- the lease a run id is held by right now (None when free).
* :class:`ForeignHolder` -- a lease written as another host's run would write it,
  renewed by a thread (a live holder) or never renewed (a dead one).
* :func:`contend` -- a process (or thread) that tries to take a lease once, at a
  shared start time, and reports whether it won.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from runner.artifacts import ArtifactStore, RunLease
from runner.errors import UsageError

OTHER_HOST = "other-node"


def other_host_wrap() -> tuple[str, ...]:
    """A command prefix that runs its command under the host name ``other-node`` (a
    retried pod on another node), or a skip saying why this machine cannot."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed: cannot give a process "
                    "another host name")
    wrap = ("unshare", "--uts", "sh", "-c", f'hostname {OTHER_HOST} && exec "$@"', "sh")
    probe = subprocess.run([*wrap, "hostname"], capture_output=True, text=True, check=False)
    if probe.returncode != 0 or probe.stdout.strip() != OTHER_HOST:
        pytest.skip(f"unshare --uts is not permitted here (needs root or user namespaces): "
                    f"{probe.stderr.strip()}")
    return wrap


def lease_files(store: ArtifactStore, run_id: str) -> list[str]:
    return [n for n in store.listdir(f"runs/{run_id}/lease") if n.endswith(".json")
            and not n.startswith(".")]


def held_lease(store: ArtifactStore, run_id: str) -> dict[str, Any] | None:
    """The newest epoch's document when it is not released, else None."""
    names = lease_files(store, run_id)
    if not names:
        return None
    doc: dict[str, Any] = json.loads(store.read_bytes(f"runs/{run_id}/lease/{names[-1]}"))
    return None if doc.get("state") == "released" else doc


class ForeignHolder:
    """Epoch 1 of ``run_id`` held by pid 4242 on build-box-7 (another host).

    ``renew``: a thread bumps its counter every ``interval`` seconds, as a live
    run does, until :meth:`stop`.
    """

    def __init__(self, store: ArtifactStore, run_id: str, *, renew: bool,
                 interval: float = 0.2, seconds: float = 1.0, **doc: Any) -> None:
        self.store, self.rel = store, f"runs/{run_id}/lease/00000001.json"
        self.doc = {"format": 1, "run_id": run_id, "epoch": 1, "token": "someone-else",
                    "host": "build-box-7", "pid": 4242, "pid_namespace": "pid:[1]",
                    "lease_seconds": seconds, "interval": interval, "renewals": 0,
                    "state": "held", **doc}
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.write()
        if renew:
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()

    def write(self) -> None:
        self.store.write_bytes(self.rel, json.dumps(self.doc).encode())

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self.doc["renewals"] += 1
            self.write()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def contend(url: str, storage_options: dict[str, Any], run_id: str, start_at: float,
            hold: float) -> str:
    """Wait until ``start_at`` (epoch seconds), try to take the lease, hold it for
    ``hold`` seconds if won, release it. ``"won <epoch>"``, or ``"refused"``."""
    lease = RunLease(ArtifactStore(url, storage_options), run_id)
    time.sleep(max(0.0, start_at - time.time()))
    try:
        lease.acquire()
    except UsageError:
        return "refused"
    try:
        time.sleep(hold)
        return f"won {lease.epoch}"
    finally:
        lease.release()


if __name__ == "__main__":
    # python -m tests.integration.lease_shapes URL OPTIONS_JSON RUN_ID START_AT HOLD
    url, options, run_id, start_at, hold = sys.argv[1:6]
    print(contend(url, json.loads(options), run_id, float(start_at), float(hold)), flush=True)
    os._exit(0)
