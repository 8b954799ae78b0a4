"""fsspec storage options from ``--storage-option KEY=VALUE`` pairs (split by the CLI)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["storage_options"]


def storage_options(items: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """fsspec storage options from ``(key, text)`` pairs, in order: ``true`` and
    ``false`` (any case) as booleans, ``endpoint_url`` inside ``client_kwargs``,
    where s3fs takes it. A front door that has split KEY=VALUE already calls this."""
    out: dict[str, Any] = {}
    for key, value in items:
        out[key] = {"true": True, "false": False}.get(value.lower(), value)
        if key == "endpoint_url":
            out.pop(key)
            out.setdefault("client_kwargs", {})["endpoint_url"] = value
    return out

