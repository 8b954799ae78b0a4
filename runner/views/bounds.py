"""How deep a plan outline read back from the store may nest.

The report walks the outline kept in run.json recursively. What runner writes nests at
most as deep as a plan may (:data:`runner.manifest.MAX_NESTING` levels of nested
pipelines and parallel groups); anything deeper was not written by runner, and is refused
in one line (exit 2) before a walk could exhaust Python's recursion limit. The span tree
has its own bound beside the spans file (:data:`runner.telemetry.spans.MAX_SPAN_DEPTH`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.manifest import MAX_NESTING
from runner.telemetry.spans import too_deep

__all__ = ["MAX_OUTLINE_DEPTH", "check_outline_depth"]

MAX_OUTLINE_DEPTH = 2 * MAX_NESTING + 8
"""A plan outline: the root, a pipeline or a group and its branch per level, a step."""


def check_outline_depth(plan: Any, *, what: str = "the run's plan outline") -> None:
    """Refuse an outline (``{"children": [...]}`` nodes) deeper than any plan. Iterative."""
    stack: list[tuple[Any, int]] = [(plan, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_OUTLINE_DEPTH:
            raise too_deep(what, MAX_OUTLINE_DEPTH)
        children = node.get("children") if isinstance(node, Mapping) else None
        if isinstance(children, list):
            stack.extend((child, depth + 1) for child in children)
