"""A real OpenTelemetry collector for the tests: rotel, run from its PyPI wheel.

The ``rotel`` wheel ships a Rust collector binary (``rotel/rotel-agent``) next
to a small Python wrapper. The wrapper daemonises it with fixed ports and a pid
file in /tmp; the tests run the binary themselves instead, in the foreground,
so they own exactly the process they start::

    with OtlpGrpcReceiver() as rx, RotelCollector(rx.endpoint) as rotel:
        exporter = OTLPSpanExporter(endpoint=rotel.grpc_endpoint, insecure=True)
        ...
        rx.wait_for(...)

:class:`RotelCollector` listens for OTLP on 127.0.0.1 only (gRPC and HTTP, two
free ports), batches for a few milliseconds and forwards everything with its
OTLP exporter to ``forward_to``. The child gets no ROTEL_* or OTEL_* variables
from the test's environment, and rotel's own internal telemetry stays off.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

HOST = "127.0.0.1"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@functools.cache
def _probe() -> tuple[str | None, str]:
    """(path of a rotel binary that runs here, or None; why not)."""
    override = os.environ.get("ROTEL_TEST_BINARY")
    if override:
        candidate = Path(override)
    else:
        try:
            dist = importlib.metadata.distribution("rotel")
        except importlib.metadata.PackageNotFoundError:
            return None, "the rotel package is not installed (pip install rotel)"
        candidate = Path(str(dist.locate_file("rotel/rotel-agent")))
    if not candidate.is_file():
        return None, f"rotel binary not found at {candidate}"
    if not os.access(candidate, os.X_OK):
        return None, f"rotel binary at {candidate} is not executable"
    try:
        done = subprocess.run([str(candidate), "--version"], capture_output=True, text=True,
                              timeout=20, env=_child_env(), check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"rotel binary at {candidate} cannot run here: {exc}"
    if done.returncode != 0:
        return None, (f"rotel binary at {candidate} cannot run here (exit {done.returncode}): "
                      f"{(done.stderr or done.stdout).strip()[:300]}")
    return str(candidate), ""


def rotel_binary() -> str | None:
    """The path of a rotel collector binary that runs on this machine, or None."""
    return _probe()[0]


def rotel_unavailable_reason() -> str:
    """Why :func:`rotel_binary` is None ("" when it is not)."""
    return _probe()[1]


def require_rotel() -> str:
    """The rotel binary, or skip the calling test with the reason it cannot run."""
    import pytest

    binary, reason = _probe()
    if binary is None:
        pytest.skip(f"rotel collector unavailable: {reason}")
    return binary


def _child_env() -> dict[str, str]:
    """The test's environment without anything that would configure rotel or an OTel SDK."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ROTEL_", "OTEL_")) and k.lower() not in
           ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy")}
    env["NO_COLOR"] = "1"
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class RotelCollector:
    """rotel listening on 127.0.0.1 (OTLP gRPC + HTTP), forwarding to ``forward_to``.

    ``forward_to`` is a receiver's base URL (``http://127.0.0.1:PORT``);
    ``protocol_out`` is ``"grpc"`` or ``"http"`` (rotel appends ``/v1/traces``
    itself for http). ``batch_timeout`` is how long rotel may hold spans before
    it forwards them (rotel's default is 200ms).
    """

    def __init__(self, forward_to: str, protocol_out: str = "grpc", *,
                 batch_timeout: str = "10ms", extra_args: tuple[str, ...] = (),
                 startup_timeout: float = 20.0, stop_timeout: float = 10.0) -> None:
        if protocol_out not in ("grpc", "http"):
            raise ValueError(f"protocol_out must be 'grpc' or 'http', not {protocol_out!r}")
        self.forward_to = forward_to
        self.protocol_out = protocol_out
        self.batch_timeout = batch_timeout
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.grpc_port = 0
        self.http_port = 0
        self.command: list[str] = []
        self.returncode: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._log: IO[bytes] | None = None
        self._final_output = ""

    # ---- endpoints
    @property
    def grpc_endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` of rotel's OTLP/gRPC receiver."""
        return f"http://{HOST}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` of rotel's OTLP/HTTP receiver (base URL, no /v1/traces)."""
        return f"http://{HOST}:{self.http_port}"

    def env(self, protocol: str = "grpc") -> dict[str, str]:
        """OTEL_* variables that point an OpenTelemetry SDK exporter at this collector."""
        if protocol == "grpc":
            return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.grpc_endpoint,
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_INSECURE": "true"}
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.http_endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def output(self) -> str:
        """What rotel logged so far (stdout and stderr, colour codes removed)."""
        if self._dir is None:
            return self._final_output
        try:
            raw = (Path(self._dir.name) / "rotel.out").read_bytes()
        except OSError:
            return ""
        return ANSI.sub("", raw.decode("utf-8", "replace"))

    # ---- lifecycle
    def __enter__(self) -> RotelCollector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _args(self, binary: str, workdir: Path) -> list[str]:
        return [
            binary, "start",
            "--otlp-grpc-endpoint", f"{HOST}:{self.grpc_port}",
            "--otlp-http-endpoint", f"{HOST}:{self.http_port}",
            # foreground: these are not written, but never let them default to /tmp
            "--pid-file", str(workdir / "rotel.pid"),
            "--log-file", str(workdir / "rotel.log"),
            "--exporter", "otlp",
            "--otlp-exporter-endpoint", self.forward_to,
            "--otlp-exporter-protocol", self.protocol_out,
            "--batch-timeout", self.batch_timeout,
            "--otlp-exporter-request-timeout", "5s",
            "--otlp-exporter-retry-initial-backoff", "100ms",
            "--otlp-exporter-retry-max-backoff", "1s",
            "--otlp-exporter-retry-max-elapsed-time", "20s",
            *self.extra_args,
        ]

    def start(self) -> RotelCollector:
        if self._proc is not None:
            raise RuntimeError("rotel already started")
        binary = rotel_binary()
        if binary is None:
            raise RuntimeError(f"rotel collector unavailable: {rotel_unavailable_reason()}")
        self._dir = tempfile.TemporaryDirectory(prefix="rotel-")
        workdir = Path(self._dir.name)
        try:
            for attempt in range(3):  # a picked port can be taken before rotel binds it
                self.grpc_port, self.http_port = free_port(), free_port()
                while self.http_port == self.grpc_port:
                    self.http_port = free_port()
                self.command = self._args(binary, workdir)
                self._log = (workdir / "rotel.out").open("wb")
                self._proc = subprocess.Popen(
                    self.command, stdin=subprocess.DEVNULL, stdout=self._log,
                    stderr=subprocess.STDOUT, env=_child_env(), cwd=workdir)
                if self._wait_ready():
                    return self
                self._terminate()
                if attempt == 2 or "address" not in self.output().lower():
                    break
            raise RuntimeError(f"rotel did not start listening on {HOST}:{self.grpc_port} and "
                               f"{HOST}:{self.http_port} (exit {self.returncode}); "
                               f"command: {' '.join(self.command)}\n{self.output()}")
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            if _accepts(self.grpc_port) and _accepts(self.http_port):
                return True
            time.sleep(0.05)
        return False

    def _terminate(self) -> None:
        """Stop exactly the process this object started: TERM, wait, KILL on timeout."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=self.stop_timeout)
            self.returncode = proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        self._terminate()
        if self._dir is not None:
            self._final_output = self.output()
            with contextlib.suppress(OSError):
                shutil.rmtree(self._dir.name, ignore_errors=True)
            self._dir.cleanup()
            self._dir = None
