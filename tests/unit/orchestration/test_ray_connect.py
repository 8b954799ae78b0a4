"""Reaching a running Ray cluster: what the runner retries, and what it does not."""

from __future__ import annotations

import logging

import pytest

from runner.orchestration.executors.ray_connect import (
    CONNECT_ATTEMPTS_ENV,
    connect_attempts,
    connect_with_retries,
)


class Flaky:
    """A connect that fails with ``errors`` in turn, then succeeds."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.resets = 0

    def connect(self) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)

    def reset(self) -> None:
        self.resets += 1


def test_a_connection_the_server_aborts_is_tried_again_with_growing_waits(caplog):
    flaky = Flaky(ConnectionAbortedError("Initialization failure from server:\nTraceback"),
                  ConnectionError("Could not find any running Ray instance"))
    waits: list[float] = []
    with caplog.at_level(logging.WARNING, logger="runner"):
        retries = connect_with_retries(flaky.connect, flaky.reset, where="ray://head:10001",
                                       attempts=3, backoff=1.5, sleep=waits.append)
    assert (retries, flaky.calls, flaky.resets, waits) == (2, 3, 2, [1.5, 3.0])
    said = [r.getMessage() for r in caplog.records]
    assert said[0] == ("could not reach Ray at ray://head:10001 (ConnectionAbortedError: "
                       "Initialization failure from server:); trying again in 2 s "
                       f"(attempt 2 of 3, {CONNECT_ATTEMPTS_ENV})")
    assert "attempt 3 of 3" in said[1] and len(said) == 2


def test_the_last_failure_is_raised_once_the_attempts_are_spent():
    flaky = Flaky(*(ConnectionRefusedError(f"refused {i}") for i in range(3)))
    with pytest.raises(ConnectionRefusedError, match="refused 1"):
        connect_with_retries(flaky.connect, flaky.reset, where="h:6379", attempts=2,
                             sleep=lambda s: None)
    assert (flaky.calls, flaky.resets) == (2, 1)


def test_anything_but_a_connection_error_is_not_retried():
    """A wrong token or a bad runtime_env does not get better by waiting."""
    flaky = Flaky(PermissionError("token rejected"))
    with pytest.raises(PermissionError):
        connect_with_retries(flaky.connect, flaky.reset, where="h:6379", attempts=5,
                             sleep=lambda s: pytest.fail("no wait expected"))
    assert (flaky.calls, flaky.resets) == (1, 0)


def test_one_attempt_means_no_retry_and_a_first_success_none():
    assert connect_with_retries(Flaky().connect, lambda: None, where="h", attempts=1) == 0
    with pytest.raises(ConnectionError):
        connect_with_retries(Flaky(ConnectionError("x")).connect, lambda: None, where="h",
                             attempts=1, sleep=lambda s: pytest.fail("no wait expected"))


@pytest.mark.parametrize(("value", "attempts"), [(None, 3), ("5", 5), ("0", 1), ("x", 3)])
def test_attempts_come_from_the_environment(monkeypatch, value, attempts):
    if value is None:
        monkeypatch.delenv(CONNECT_ATTEMPTS_ENV, raising=False)
    else:
        monkeypatch.setenv(CONNECT_ATTEMPTS_ENV, value)
    assert connect_attempts() == attempts
