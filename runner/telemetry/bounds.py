"""How deep a plan outline or a span tree read back from the store may nest.

The report and the trace view walk these trees recursively. What runner writes
nests at most as deep as a plan may (:data:`runner.manifest.MAX_NESTING` levels
of nested pipelines and parallel groups); anything deeper was not written by
runner, and is refused in one line (exit 2) before a walk could exhaust
Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.errors import ArtifactError
from runner.manifest import MAX_NESTING

__all__ = ["MAX_OUTLINE_DEPTH", "MAX_SPAN_DEPTH", "check_outline_depth", "too_deep"]

MAX_OUTLINE_DEPTH = 2 * MAX_NESTING + 8
"""A plan outline: the root, a pipeline or a group and its branch per level, a step."""
MAX_SPAN_DEPTH = 4 * MAX_NESTING + 64
"""Spans: runner's own per level (pipeline, group, branch, checkpoint) plus room for the
spans a stage's own code opens under its step."""


def too_deep(what: str, limit: int) -> ArtifactError:
    return ArtifactError(f"{what} nests more than {limit} levels deep, deeper than anything "
                         "runner writes: refusing to read it")


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
