"""Trying again after a failure that passes: one backoff policy, kept as data, and one
way to read a number of tries (or an on/off flag) from the environment.

Both front doors to a remote service use it: the Kubernetes API chokepoint
(:mod:`runner.k8s.api`, env ``RUNNER_K8S_RETRIES``) and the Ray executor's connection
(env ``RUNNER_RAY_CONNECT_ATTEMPTS``). Each decides what is worth another try; this
module says how many tries and how long to wait between them.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from runner.errors import UsageError

__all__ = ["TRUE_WORDS", "RetryPolicy", "env_flag", "env_int", "env_seconds"]

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
"""What turns an on/off environment variable on (any case, spaces around)."""


def env_int(name: str, default: int, *, least: int = 1) -> int:
    """The whole number in environment variable ``name``, at least ``least``; ``default``
    when it is unset or not a number (a retry count is a tuning knob, not a reason to
    refuse a run)."""
    try:
        return max(least, int(os.environ.get(name, default)))
    except ValueError:
        return default


def env_flag(name: str) -> bool:
    """Whether environment variable ``name`` is on: one of :data:`TRUE_WORDS`."""
    return os.environ.get(name, "").strip().lower() in TRUE_WORDS


def env_seconds(name: str, default: float, *, zero: bool = True,
                environ: Mapping[str, str] | None = None) -> float:
    """Seconds in environment variable ``name``, ``default`` when unset or blank; any
    other value than a finite number >= 0 (> 0 unless ``zero``) is a usage error that
    names the variable (a wait the user asked for is not guessed)."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise UsageError(f"{name}={raw!r}: expected seconds, a number {'>=' if zero else '>'} "
                         f"0 (default {default:g})")
    return value


@dataclass
class RetryPolicy:
    """How many tries, and the waits between them: doubling from ``backoff`` seconds up
    to ``cap``, or longer when the other side asks for it (``Retry-After``)."""

    attempts: int = 3
    """Tries in all, the first included."""
    backoff: float = 0.5
    """Seconds before the second try; each later wait doubles."""
    cap: float = math.inf
    """The longest wait between two tries."""
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    """How to wait (tests make it instant)."""

    def delay(self, attempt: int, *, at_least: float | None = None) -> float:
        """Seconds to wait after try ``attempt`` (0 for the first) failed."""
        base = min(self.cap, self.backoff * 2.0 ** attempt)
        return float(max(base, at_least) if at_least is not None else base)

    def pause(self, attempt: int, *, at_least: float | None = None) -> float:
        """Wait :meth:`delay` seconds; returns them."""
        seconds = self.delay(attempt, at_least=at_least)
        self.sleep(seconds)
        return seconds
