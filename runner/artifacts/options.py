"""fsspec storage options from text: what ``--storage-option KEY=VALUE`` gives."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runner.errors import ArtifactError

__all__ = ["storage_options", "storage_options_from"]


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


def storage_options_from(pairs: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` (``--storage-option``) to fsspec storage options."""
    return storage_options(_split(pair) for pair in pairs)


def _split(pair: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise ArtifactError(f"--storage-option {pair!r}: expected KEY=VALUE")
    return key, value
