"""What every tracing test here starts from: no trace variables of the developer's
shell, and a real OTLP receiver (HTTP and gRPC) for the tests that ask for one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.otlp import OtlpGrpcReceiver, OtlpHttpReceiver, clear_trace_env


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_trace_env(monkeypatch)


@pytest.fixture(params=["http", "grpc"])
def receiver(request: pytest.FixtureRequest) -> Iterator[OtlpHttpReceiver | OtlpGrpcReceiver]:
    cls = OtlpHttpReceiver if request.param == "http" else OtlpGrpcReceiver
    with cls() as rec:
        yield rec
