"""The version a run's spans carry (``service.version``, the tracer's) is the installed
package's: ``runner.__version__`` is read instead of scanning the installed distributions
at every run's start, so the two must agree."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pytest

import runner
from runner.telemetry.otlp import TelemetryConfig, make_resource
from runner.telemetry.otlp import version as runner_version


def test_the_package_metadata_and_runner_version_agree() -> None:
    try:
        installed = version("runner")
    except PackageNotFoundError:  # pragma: no cover - a source tree, nothing installed
        pytest.skip("runner is not installed in this environment")
    assert runner.__version__ == installed
    assert runner_version() == installed


def test_spans_resource_carries_the_version() -> None:
    resource = make_resource(TelemetryConfig())
    assert resource.attributes["service.version"] == runner.__version__
