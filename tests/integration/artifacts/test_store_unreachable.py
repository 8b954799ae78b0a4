"""An artifact store whose server does not answer is infrastructure (exit 4), one line
naming the store; a server that answers and refuses stays the user's (exit 2). (``runner
run`` against it: tests/integration/test_store.py, test_unusable_storage_*.)

Through the real command line, against an S3 endpoint on a closed port and against the
moto server (tests/integration/conftest.py) with a bucket that does not exist.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import AWS_ENV, AWS_UNSET, free_port

pytestmark = pytest.mark.integration

KEY = "0123456789abcdef" * 4
FAST = {**AWS_ENV, "AWS_MAX_ATTEMPTS": "1", "RUNNER_ARTIFACT_KEY": KEY}
"""botocore's own retries off: the figure printed is one try's."""


def _env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in AWS_UNSET:
        monkeypatch.delenv(name, raising=False)
    return dict(FAST)


@pytest.mark.parametrize("command", [["runs", "list"], ["runs", "show", "r-1"]],
                         ids=["runs list", "runs show"])
def test_an_s3_endpoint_on_a_closed_port_exits_4_naming_the_store(command, tmp_path, cli,
                                                                  monkeypatch):
    endpoint = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = cli(*command, "--artifacts", "s3://quant/runner", "--storage-option",
               f"endpoint_url={endpoint}", cwd=tmp_path, env=_env(monkeypatch))
    print(f"runner {' '.join(command)} against a closed S3 port: "
          f"{time.monotonic() - started:.2f} s wall")
    assert done.returncode == 4, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("error: ") and "s3://quant/runner" in line, line
    assert "its server does not answer (EndpointConnectionError: Could not connect to the " \
           f"endpoint URL: \"{endpoint}/quant" in line, line
    assert "Traceback" not in done.stderr


def test_a_bucket_that_does_not_exist_stays_the_users_error(s3_server, tmp_path, cli,
                                                           monkeypatch):
    """The server answers (no such bucket): exit 2, as before; only no answer is 4."""
    done = cli("runs", "show", "r-1", "--artifacts", "s3://no-such-bucket-here/runner",
               "--storage-option", f"endpoint_url={s3_server.endpoint}", cwd=tmp_path,
               env=_env(monkeypatch))
    assert done.returncode == 2, done.stderr
    assert "does not answer" not in done.stderr and "Traceback" not in done.stderr
