"""Reaching Ray: a local single-node Ray started for one run, or a running cluster.

With no address, the run starts its own Ray bound to the loopback interface
only, in a temp folder and with an auth token of its own (:class:`LocalRayEnv`).
With ``RAY_ADDRESS``, the run first checks that something listens there
(:func:`probe`: Ray would wait minutes) and tries again after a connection error
(:func:`connect_with_retries`, ``RUNNER_RAY_CONNECT_ATTEMPTS``). Stage modules
Ray's workers cannot import themselves are shipped with the job
(:func:`modules_to_ship`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from runner.errors import UsageError
from runner.retry import RetryPolicy, env_int

__all__ = ["CONNECT_ATTEMPTS_ENV", "INSTALL_HINT", "LocalRayEnv", "NotMainThread",
           "connect_attempts", "connect_with_retries", "import_ray", "modules_to_ship",
           "probe"]

log = logging.getLogger("runner")

INSTALL_HINT = "install the ray extra: pip install 'runner[ray]' (or pip install 'ray[default]')"


CONNECT_ATTEMPTS_ENV = "RUNNER_RAY_CONNECT_ATTEMPTS"


def connect_attempts() -> int:
    """How many times a run tries to reach a Ray cluster (env RUNNER_RAY_CONNECT_ATTEMPTS,
    default 3)."""
    return env_int(CONNECT_ATTEMPTS_ENV, 3)


def probe(address: str, timeout: float = 5.0) -> None:
    """A ``ConnectionError`` at once when nothing listens at a cluster's address.

    Ray itself waits minutes on an address where nothing answers (it keeps asking
    for the GCS), and rewrites a loopback host to the machine's own address.
    ``auto`` and addresses without a port are left to Ray.
    """
    hostport = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except ConnectionError:
        raise
    except OSError as exc:  # a timeout, an unknown host, no route
        raise ConnectionError(f"{hostport}: {exc or type(exc).__name__}") from exc


def connect_with_retries(connect: Callable[[], None], reset: Callable[[], None], *,
                         where: str, attempts: int, backoff: float = 2.0,
                         sleep: Callable[[float], None] = time.sleep) -> int:
    """``connect()``, tried again after a ``ConnectionError``; returns how many retries.

    Reaching a running cluster can fail for a moment: a busy head's Ray client server
    may fail to start the server process of a new client (``ConnectionAbortedError:
    Initialization failure from server``), a GCS may be restarting. Ray retries the
    connection itself, but not a failure the server reports. ``reset()`` clears a half
    made connection before the next try; waits double from ``backoff`` seconds.
    """
    policy = RetryPolicy(attempts=attempts, backoff=backoff, sleep=sleep)
    for attempt in range(attempts - 1):
        try:
            connect()
            return attempt
        except ConnectionError as exc:
            delay = policy.delay(attempt)
            first = (str(exc).strip().splitlines() or [""])[0]
            log.warning("could not reach Ray at %s (%s: %s); trying again in %.0f s "
                        "(attempt %d of %d, %s)", where, type(exc).__name__, first, delay,
                        attempt + 2, attempts, CONNECT_ATTEMPTS_ENV)
            reset()
            policy.sleep(delay)
    connect()  # the last attempt: its error is the run's
    return max(attempts - 1, 0)


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`UsageError` that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError(f"executor 'ray' needs Ray, which is not installed: {INSTALL_HINT}"
                         ) from exc
    return ray


_TOKEN: list[str] = []


def process_token() -> str:
    """One auth token per process: Ray keeps the first token it loads for the life of
    the process, so a second local Ray started here must use the same one."""
    if not _TOKEN:
        _TOKEN.append(secrets.token_hex(32))
    return _TOKEN[0]


class LocalRayEnv:
    """The environment of a local Ray started for one run, set while it runs.

    With Ray 2.60 every listener of a single-node Ray is on 127.0.0.1 only when
    its node address is 127.0.0.1 and ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
    (otherwise Ray listens on all interfaces and advertises the machine's
    address). The run's Ray also gets its own short temp folder (sessions, logs,
    sockets; never joining another Ray on the machine through /tmp/ray), its own
    auth token, free metrics ports and no usage statistics.
    """

    def __init__(self) -> None:
        base = "/tmp" if Path("/tmp").is_dir() else None  # socket paths must stay short
        self.folder = tempfile.mkdtemp(prefix="runner-ray-", dir=base)
        token = Path(self.folder, "auth_token")
        token.touch(mode=0o600)
        secret = process_token()
        token.write_text(secret, encoding="ascii")
        self.values = {
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
            # the value too: it wins over any token file Ray may have read before
            "RAY_AUTH_TOKEN": secret,
            "RAY_TMPDIR": self.folder,
            "AUTOSCALER_METRIC_PORT": "0",
            "DASHBOARD_METRIC_PORT": "0",
        }
        self._saved: dict[str, str | None] = {}

    def apply(self) -> None:
        for key, value in self.values.items():
            self._saved[key] = os.environ.get(key)
            os.environ[key] = value
        self._saved.setdefault("RAY_ADDRESS", os.environ.pop("RAY_ADDRESS", None))

    def restore(self) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


class NotMainThread(logging.Filter):
    """Ray warns that it sets no SIGTERM handler when init runs off the main thread;
    starting in the background is the point, and the runner handles signals itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


def modules_to_ship(modules: Sequence[str]) -> list[str]:
    """Local paths of the stage modules that Ray workers could not import themselves.

    A module installed in site-packages (or the runner itself, which every node's
    image has) is importable on the workers; a package or a single ``.py`` file
    from a source folder (``my_stages.py`` beside the manifest) is shipped with
    the job through Ray's ``runtime_env={"py_modules": [...]}``.
    """
    paths: list[str] = []
    for top in dict.fromkeys(m.split(".")[0] for m in modules):
        if top in ("runner", "__main__") or top in sys.stdlib_module_names:
            continue
        spec = importlib.util.find_spec(top)
        if spec is None:
            continue
        locations = list(spec.submodule_search_locations or [])
        origin = locations[0] if locations else spec.origin
        if not origin or origin in ("built-in", "frozen"):
            continue
        path = Path(origin)
        if any(part in ("site-packages", "dist-packages") for part in path.parts):
            continue
        if path.suffix == ".py" or path.is_dir():
            paths.append(str(path))
    return paths
