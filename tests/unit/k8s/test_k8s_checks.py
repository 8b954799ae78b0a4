"""Kubernetes values checked before anything is sent: each bad one is a UsageError
(exit 2) whose one line names the option and says what is expected."""

from __future__ import annotations

import pytest

from runner.errors import UsageError
from runner.k8s import checks


@pytest.mark.parametrize("cron", ["0 6 * * 1-5", "*/15 * * * *", "0 0 1 jan,jul *",
                                  "30 7 * * MON-FRI", "0 0 ? * SUN", "@daily", "@HOURLY",
                                  "0-59/5 0,12 1-31 1-12 0-6"])
def test_good_cron_expressions_pass(cron):
    assert checks.check_cron(cron) == cron.strip()


@pytest.mark.parametrize(("cron", "words"), [
    ("0 6 * *", "expected 5 fields"), ("61 * * * *", "minute '61' is not in 0-59"),
    ("0 24 * * *", "hour"), ("0 0 0 * *", "day of month '0'"), ("0 0 * 13 *", "month"),
    ("0 0 * * 7", "day of week '7' is not in 0-6"), ("*/0 * * * *", "step"),
    ("0 0 * * fri-mon", "runs backwards"), ("@every 5m", "expected 5 fields"),
    ("TZ=UTC 0 6 * * *", "--time-zone"), ("nonsense", "expected 5 fields"),
    ("0 6 * * 1-5 2026", "got 6"), ("a b c d e", "minute 'a'"),
])
def test_bad_cron_expressions_are_refused(cron, words):
    with pytest.raises(UsageError, match="--cron") as refused:
        checks.check_cron(cron)
    assert words in str(refused.value)


def test_time_zones_are_iana_names():
    assert checks.check_time_zone("Europe/London") == "Europe/London"
    assert checks.check_time_zone("UTC") == "UTC"
    for bad in ("Mars/Olympus", "Local", "../etc/passwd", "", "Europe/"):
        with pytest.raises(UsageError, match="--time-zone"):
            checks.check_time_zone(bad)


@pytest.mark.parametrize("value", ["1", "500m", "0.5", "2Gi", "512Mi", "1e3", "1.5", "4k",
                                   "100M", ".5"])
def test_quantities(value):
    assert checks.check_quantity(value, option="--memory") == value


@pytest.mark.parametrize("value", ["2GB", "-1", "two", "", "1 Gi", "2gi", "1.2.3", "Gi",
                                   " 1"])
def test_bad_quantities_are_refused(value):
    with pytest.raises(UsageError, match=r"--cpu .* is not a Kubernetes quantity"):
        checks.check_quantity(value, option="--cpu")


def test_names_and_label_values():
    assert checks.check_namespace("research-1") == "research-1"
    for bad in ("Research", "a_b", "-a", "a" * 64, "", "a.b"):
        with pytest.raises(UsageError, match="namespace"):
            checks.check_namespace(bad)
    assert checks.check_label_value("Nightly_1.x", option="--run-id")
    for bad in ("a" * 64, "a/b", "-a", "a-", "a b", "nightly\n"):
        with pytest.raises(UsageError, match=r"--run-id .* label value"):
            checks.check_label_value(bad, option="--run-id")
    assert checks.check_dns_subdomain("s3-credentials.v2", what="--secret-env")
    with pytest.raises(UsageError, match="--secret-env"):
        checks.check_dns_subdomain("S3_Credentials", what="--secret-env")


@pytest.mark.parametrize("key", ["secret", "key", "aws_secret_access_key", "Token",
                                 "PASSWORD", "client_key", "sessionToken", "KEY_ID",
                                 "db_password_file"])
def test_credential_looking_storage_options_are_refused(key):
    with pytest.raises(UsageError, match="--secret-env"):
        checks.check_storage_options({"endpoint_url": "http://minio:9000", key: "x"})


def test_plain_storage_options_pass():
    options = {"endpoint_url": "http://minio:9000", "anon": "false", "use_ssl": "true"}
    assert checks.check_storage_options(options) == options
