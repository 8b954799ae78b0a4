"""rich's markup escape, imported when first used.

``escape`` makes user text literal in rich markup (a ``[`` in a stage's name or an
error message is not a style). rich itself is imported on the first call, so a
command that prints nothing through rich (``runner run P -q --json``) never imports it.
"""

from __future__ import annotations

__all__ = ["escape"]


def escape(text: str) -> str:
    """``rich.markup.escape(text)``: text without ``[`` nor a trailing backslash is
    returned as it is (rich changes nothing in it), without importing rich."""
    if "[" not in text and not text.endswith("\\"):
        return text
    from rich.markup import escape as rich_escape

    return rich_escape(text)
