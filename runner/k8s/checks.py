"""Kubernetes values checked here, before anything is sent (``--dry-run`` included).

A value the API server (or the CronJob controller, hours later) would refuse is one
clear :class:`~runner.errors.UsageError` now (exit 2) naming the option:

    check_cron("0 6 * * 1-5", option="--cron")          # 5 fields or @daily & co.
    check_time_zone("Europe/London", option="--time-zone")
    check_quantity("2Gi", option="--memory")
    check_namespace("research")
    check_label_value("nightly-1", option="--run-id")
    check_storage_options({"endpoint_url": "http://minio:9000"})   # never credentials
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping

from runner.errors import UsageError

__all__ = ["CREDENTIAL_WORDS", "check_cron", "check_dns_label", "check_dns_subdomain",
           "check_label_value", "check_namespace", "check_quantity",
           "check_storage_options", "check_time_zone", "looks_like_a_credential"]

CREDENTIAL_WORDS = ("key", "secret", "token", "password")
"""Substrings (any case) of a storage option's name that mark it a credential."""

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_QUANTITY = re.compile(r"(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+|[KMGTPE]i|[numkMGTPE])?")

# robfig/cron's standard parser, which the CronJob controller uses
_DESCRIPTORS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily",
                          "@midnight", "@hourly"})
_MONTHS = {m: i + 1 for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_FIELDS: tuple[tuple[str, int, int, Mapping[str, int]], ...] = (
    ("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS), ("day of week", 0, 6, _DAYS))


def _number(text: str, low: int, high: int, names: Mapping[str, int]) -> int | None:
    value = names.get(text.lower())
    if value is None and text.isdigit():
        value = int(text)
    return value if value is not None and low <= value <= high else None


def _cron_field(text: str, what: str, low: int, high: int, names: Mapping[str, int]) -> str | None:
    """Why one field of a cron expression is wrong, or None."""
    for item in text.split(","):
        span, slash, step = item.partition("/")
        if slash and (not step.isdigit() or int(step) == 0):
            return f"{what} step {step!r} is not a positive number"
        if span in ("*", "?"):
            continue
        first, dash, last = span.partition("-")
        start = _number(first, low, high, names)
        end = _number(last, low, high, names) if dash else start
        if start is None or end is None:
            return f"{what} {span!r} is not in {low}-{high}"
        if end < start:
            return f"{what} range {span!r} runs backwards"
    return None


def check_cron(expression: str, *, option: str = "--cron") -> str:
    """A schedule the CronJob controller accepts: five fields or a descriptor (@daily)."""
    text = expression.strip()
    if text.lower() in _DESCRIPTORS:
        return text
    if text.upper().startswith(("TZ=", "CRON_TZ=")):
        raise UsageError(f"{option} {expression!r}: Kubernetes refuses TZ= in the "
                         f"schedule; give the zone with --time-zone")
    fields = text.split()
    if len(fields) != 5:
        raise UsageError(f"{option} {expression!r}: expected 5 fields (minute hour "
                         f"day-of-month month day-of-week) or @hourly/@daily/@weekly/"
                         f"@monthly/@yearly, got {len(fields)}")
    for part, (what, low, high, names) in zip(fields, _FIELDS, strict=True):
        why = _cron_field(part, what, low, high, names)
        if why is not None:
            raise UsageError(f"{option} {expression!r}: {why}")
    return text


def check_time_zone(name: str, *, option: str = "--time-zone") -> str:
    """An IANA zone the API server knows (not ``Local``, which it refuses)."""
    if name.strip().lower() == "local":
        raise UsageError(f"{option} {name!r}: Kubernetes refuses Local; name the zone, "
                         f"e.g. Europe/London")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise UsageError(f"{option} {name!r} is not an IANA time zone "
                         f"(e.g. UTC, Europe/London, America/New_York)") from None
    return name


def check_quantity(value: str, *, option: str) -> str:
    """A Kubernetes resource quantity (``500m``, ``2``, ``2Gi``, ``1.5``), not negative."""
    if not _QUANTITY.fullmatch(value.strip()) or value != value.strip():
        raise UsageError(f"{option} {value!r} is not a Kubernetes quantity "
                         f"(e.g. 500m, 2, 1.5, 512Mi, 2Gi)")
    return value


def check_dns_label(value: str, *, what: str) -> str:
    if not _DNS_LABEL.fullmatch(value):
        raise UsageError(f"{what} {value!r} is not a DNS label (1-63 lowercase letters, "
                         f"digits and '-', starting and ending with a letter or digit)")
    return value


def check_dns_subdomain(value: str, *, what: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise UsageError(f"{what} {value!r} is not a Kubernetes name (lowercase letters, "
                         f"digits, '-' and '.', at most 253)")
    return value


def check_namespace(value: str) -> str:
    return check_dns_label(value, what="namespace")


def check_label_value(value: str, *, option: str) -> str:
    """A label value as it is (we label by it and find the run by it again)."""
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise UsageError(f"{option} {value!r} cannot be a Kubernetes label value (at most "
                         f"63 letters, digits, '-', '_' or '.', starting and ending with a "
                         f"letter or digit)")
    return value


def looks_like_a_credential(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in CREDENTIAL_WORDS)


def check_storage_options(options: Mapping[str, str]) -> Mapping[str, str]:
    """Storage options go into the Job's args, readable by anyone who can read Jobs:
    a credential among them is refused."""
    for key in options:
        if looks_like_a_credential(key):
            raise UsageError(f"--storage-option {key}=...: looks like a credential, which "
                             f"would be stored in the Job's args; put it in a Secret and "
                             f"use --secret-env SECRET (e.g. with AWS_SECRET_ACCESS_KEY)")
    return options
