"""Storage options for fsspec from ``--storage-option KEY=VALUE`` pairs."""

from __future__ import annotations

from typing import Any

from runner.errors import ArtifactError

__all__ = ["storage_options_from"]


def storage_options_from(pairs: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` (``--storage-option``) to fsspec storage options."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ArtifactError(f"--storage-option {pair!r}: expected KEY=VALUE")
        lowered = value.lower()
        out[key] = {"true": True, "false": False}.get(lowered, value)
        if key == "endpoint_url":  # s3fs takes it inside client_kwargs
            out.pop(key)
            out.setdefault("client_kwargs", {})["endpoint_url"] = value
    return out
