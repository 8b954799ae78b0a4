"""API objects as the API server and ``kubectl apply -f`` take them: plain dicts, and a
multi-document YAML stream (what ``runner submit --dry-run`` prints)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml
from kubernetes import client

__all__ = ["to_dicts", "to_yaml"]


def to_dicts(objects: Sequence[Any]) -> list[dict[str, Any]]:
    """Client models (or dicts) as plain JSON-ready dicts, as the API server takes them."""
    api = client.ApiClient()
    return [o if isinstance(o, dict) else api.sanitize_for_serialization(o)
            for o in objects]


class _Dumper(yaml.SafeDumper):
    """Keys in the order the API documents them, multi-line text as ``|`` blocks."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def to_yaml(objects: Sequence[Any], *, comment: str | None = None) -> str:
    """A multi-document YAML stream, as ``kubectl apply -f`` takes it; ``comment``
    (``#`` lines) heads it."""
    head = "".join(f"# {line}".rstrip() + "\n" for line in (comment or "").splitlines())
    return head + "".join(
        "---\n" + yaml.dump(d, Dumper=_Dumper, sort_keys=False, width=100)
        for d in to_dicts(objects))
