"""The shipped stages' params read with a message in words when a value is wrong."""

from __future__ import annotations

from typing import Any

__all__ = ["param_float", "param_int"]


def param_float(params: dict[str, Any], name: str, default: float) -> float:
    """``params[name]`` as a float, with a message in words when it is not one."""
    value = params.get(name, default)
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"param {name!r} must be a number, got {value!r}") from exc


def param_int(params: dict[str, Any], name: str, default: int, *, minimum: int = 1) -> int:
    """``params[name]`` as an int >= ``minimum``."""
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"param {name!r} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"param {name!r} must be at least {minimum}, got {value!r}")
    return int(value)
