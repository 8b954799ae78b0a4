"""Real storage back ends for the artifact-store tests.

* ``s3_server`` (session): moto's S3 API server on 127.0.0.1 and a free port,
  started here and stopped at the end of the session, with fake credentials
  in the environment (restored afterwards) and no AWS config files read.
* ``s3_root``: a fresh bucket per test, as ``s3://<bucket>/prefix`` plus the
  fsspec storage options that reach the server.
* ``store_root``: the same suite on a local folder, ``memory://`` and S3.
* ``driver`` (per module): headless Chromium through Selenium, for the HTML report;
  skipped with the reason when /usr/bin/chromium or /usr/bin/chromedriver is absent.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # never read a developer's real AWS configuration or credentials
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
AWS_UNSET = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL",
             "AWS_ENDPOINT_URL_S3")


def free_port() -> int:
    """A TCP port nobody listens on right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clear_s3fs_caches() -> None:
    """Forget cached S3FileSystem instances (and with them their listings caches)."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@dataclass(frozen=True)
class S3Server:
    host: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def storage_options(self) -> dict[str, Any]:
        return {"client_kwargs": {"endpoint_url": self.endpoint},
                "key": "testing", "secret": "testing"}

    def admin(self) -> Any:
        """An S3FileSystem of its own (not the instance a store shares)."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False,
                                 **self.storage_options())


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server, bound to 127.0.0.1, for the whole session."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_ENV.items():
            mp.setenv(name, value)
        for name in AWS_UNSET:
            mp.delenv(name, raising=False)
        server = S3Server("127.0.0.1", free_port())
        moto = ThreadedMotoServer(ip_address=server.host, port=server.port, verbose=False)
        moto.start()
        try:
            server.admin().ls("")  # answers before any test uses it
            yield server
        finally:
            moto.stop()
            clear_s3fs_caches()


class S3Root(NamedTuple):
    url: str
    storage_options: dict[str, Any]
    bucket: str
    server: S3Server


@pytest.fixture
def s3_root(s3_server: S3Server) -> Iterator[S3Root]:
    """``s3://<fresh bucket>/prefix`` and the storage options to reach it."""
    bucket = f"store-{uuid.uuid4().hex[:16]}"
    admin = s3_server.admin()
    admin.mkdir(bucket)
    clear_s3fs_caches()
    yield S3Root(f"s3://{bucket}/prefix", s3_server.storage_options(), bucket, s3_server)
    clear_s3fs_caches()
    if admin.exists(bucket):
        admin.rm(bucket, recursive=True)


class StoreRoot(NamedTuple):
    """Where a test's artifact store lives: unpack as ``url, storage_options``."""

    url: str
    storage_options: dict[str, Any]

    @property
    def kind(self) -> str:
        scheme = self.url.partition("://")[0] if "://" in self.url else "local"
        return {"s3": "s3", "memory": "memory"}.get(scheme, "local")


@pytest.fixture(params=["local", "memory", "s3"])
def store_root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreRoot]:
    """The same test on a local folder, fsspec's memory filesystem and moto S3."""
    if request.param == "local":
        yield StoreRoot(str(tmp_path / "store"), {})
    elif request.param == "memory":
        import fsspec

        name = f"store-{uuid.uuid4().hex[:16]}"
        yield StoreRoot(f"memory://{name}", {})
        fs = fsspec.filesystem("memory")
        if fs.exists(f"/{name}"):
            fs.rm(f"/{name}", recursive=True)
    else:
        s3 = request.getfixturevalue("s3_root")
        yield StoreRoot(s3.url, s3.storage_options)


class CliRoot(NamedTuple):
    url: str
    storage_options: dict[str, Any]
    args: list[str]
    """``--storage-option`` arguments for the command line."""
    env: dict[str, str]

    @property
    def kind(self) -> str:
        return "s3" if self.url.startswith("s3://") else "local"

    def cli_args(self) -> list[str]:
        return ["--artifacts", self.url, *self.args]


@pytest.fixture(params=["local", "s3"])
def cli_root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CliRoot]:
    """A store a ``runner`` subprocess can reach too (not ``memory://``)."""
    if request.param == "local":
        yield CliRoot(str(tmp_path / "store"), {}, [], {})
    else:
        s3 = request.getfixturevalue("s3_root")
        yield CliRoot(s3.url, s3.storage_options,
                      ["--storage-option", f"endpoint_url={s3.server.endpoint}"],
                      dict(AWS_ENV))



def run_cli(*args: Any, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m runner.cli ARGS`` with the repository importable (``tests.*`` stages).

    No signing key leaks in from the test process unless ``env`` gives one.
    """
    full_env = {k: v for k, v in os.environ.items() if k != "RUNNER_ARTIFACT_KEY"}
    full_env.update(PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture
def cli() -> Any:
    """The ``runner`` command line in a subprocess: ``cli(*args, cwd=..., env=...)``."""
    return run_cli


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    """Headless Chromium through Selenium, quit however the tests end."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1800"):
        options.add_argument(arg)
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield browser
    finally:
        browser.quit()
