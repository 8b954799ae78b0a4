"""How wide a label is drawn: estimates for fitting the report's text in its boxes.

Text widths are estimated from the glyph widths of DejaVu Sans, the widest of the
usual sans-serif fallbacks, so a label fitted here is not clipped in a real
browser (the DAG, :mod:`runner.views.dag`, and the timeline use them).
"""

from __future__ import annotations

__all__ = ["fit_text", "text_width"]

# Advance widths (em) of DejaVu Sans Bold, grouped; regular text is about 8 % narrower.
_WIDTHS = {**dict.fromkeys(" ijl.,:;'|!I", 0.38), **dict.fromkeys("frt()[]{}-_/\\\"`J", 0.52),
           **dict.fromkeys("csz*?", 0.62), **dict.fromkeys("mwMW@", 1.06),
           **dict.fromkeys("<>=+~#%&", 0.84), **dict.fromkeys("ABCDEFGHKLNOPQRSTUVXYZ", 0.8)}
_DEFAULT_W, _OTHER_W = 0.72, 1.0  # ASCII letters and digits; anything else


def _em(char: str) -> float:
    return _WIDTHS.get(char, _DEFAULT_W if char.isascii() else _OTHER_W)


def text_width(text: str, px: float, *, bold: bool = True) -> float:
    """A generous estimate of the width ``text`` takes at ``px`` (sans-serif)."""
    return sum(map(_em, text)) * px * (1.0 if bold else 0.92)


def fit_text(text: str, room: float, px: float, *, bold: bool = True) -> str:
    """``text`` if it fits in ``room``, else its longest prefix that fits with an ellipsis."""
    if text_width(text, px, bold=bold) <= room:
        return text
    scale, ellipsis = px * (1.0 if bold else 0.92), _em("…")
    used, keep = 0.0, 0
    for char in text:  # the same sums, in the same order, as text_width's: no rounding gap
        used += _em(char)
        if (used + ellipsis) * scale > room:
            break
        keep += 1
    return text[:max(keep, 1)].rstrip() + "…"
