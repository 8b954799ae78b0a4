"""The one retry policy and environment-integer helper of the Kubernetes API and Ray."""

from __future__ import annotations

import pytest

from runner.retry import RetryPolicy, env_int


@pytest.mark.parametrize(("value", "expected"), [(None, 4), ("7", 7), ("0", 1), ("-3", 1),
                                                 ("many", 4), ("", 4)])
def test_env_int_reads_a_whole_number_of_at_least_one(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("RUNNER_TEST_TRIES", raising=False)
    else:
        monkeypatch.setenv("RUNNER_TEST_TRIES", value)
    assert env_int("RUNNER_TEST_TRIES", 4) == expected


def test_the_waits_double_up_to_the_cap_and_honour_a_longer_ask():
    waited: list[float] = []
    policy = RetryPolicy(attempts=6, backoff=0.5, cap=3.0, sleep=waited.append)
    assert [policy.delay(a) for a in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(0, at_least=10.0) == 10.0
    assert policy.delay(3, at_least=0.1) == 3.0
    assert policy.pause(1) == 1.0 and waited == [1.0]
