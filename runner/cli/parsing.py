"""What the shared options become: ``KEY=VALUE`` options parsed in one place
(``--param``, ``--storage-option``, ``--env``), and the SDK or store they open."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import UsageError

if TYPE_CHECKING:  # loaded by the commands that use them, never for --help
    from runner.artifacts import ArtifactStore
    from runner.orchestration.plan import Plan
    from runner.sdk import QuantSDK

__all__ = ["artifact_root", "key_values", "open_sdk", "open_store", "params", "root_context",
           "storage_options"]


def key_values(items: Iterable[str] | None, *, option: str) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` as ``{"a": "1", "b": "x=y"}``; an item without ``=`` or
    without a key is a usage error naming ``option``."""
    found: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} {item!r}: expected KEY=VALUE")
        found[key] = value
    return found


def params(items: Iterable[str] | None, *, option: str = "--param") -> dict[str, Any]:
    """``--param`` values: each VALUE parsed as JSON when it can be, else the text."""
    found: dict[str, Any] = {}
    for key, raw in key_values(items, option=option).items():
        try:
            found[key] = json.loads(raw)
        except ValueError:
            found[key] = raw
    return found


def storage_options(items: Iterable[str] | None) -> dict[str, Any]:
    """``--storage-option`` values as fsspec storage options."""
    from runner.artifacts import storage_options as from_pairs

    return from_pairs(key_values(items, option="--storage-option").items())


def open_sdk(manifest: str | None, *, artifacts: str | None = None,
             storage_option: list[str] | None = None, path: list[Path] | None = None,
             allow_unsigned: bool = False) -> QuantSDK:
    """The SDK for the manifest (``RUNNER_MANIFEST`` or the default without one)."""
    from runner.manifest_json import default_manifest
    from runner.sdk import QuantSDK

    return QuantSDK(manifest or default_manifest(), artifacts=artifacts,
                    storage_options=storage_options(storage_option), path=path or (),
                    allow_unsigned=allow_unsigned)


def artifact_root(artifacts: str | None) -> tuple[str, str]:
    """The artifact root, and where it came from in the user's terms."""
    import os

    if artifacts:
        return artifacts, "from --artifacts"
    if os.environ.get("RUNNER_ARTIFACTS"):
        return os.environ["RUNNER_ARTIFACTS"], "from RUNNER_ARTIFACTS"
    return "data/artifacts", "the default root data/artifacts, under the current folder"


def open_store(artifacts: str | None, storage_option: list[str] | None) -> ArtifactStore:
    """The artifact store the ``runs``, ``artifacts``, ``trace`` and ``report`` commands read."""
    from runner.artifacts import ArtifactStore

    return ArtifactStore(artifact_root(artifacts)[0], storage_options(storage_option))


def root_context(plan: Plan, given: dict[str, Any]) -> Any:
    """The pipeline's root context, with ``--param`` values in its ``params`` (None:
    no values, the default root)."""
    if not given:
        return None
    fields = getattr(plan.context_type, "model_fields", {})
    if "params" not in fields:
        raise UsageError(f"pipeline {plan.pipeline!r}: its {plan.context_type.__name__} has no "
                         "'params' field, so --param/--data cannot apply")
    return plan.context_type(params=given)
