"""Words of the messages users read: counted nouns and close-match suggestions.

Both are for text shown to a person (``1 pipeline``, ``2 pipelines``; ``'thread'``
-> ``(did you mean 'threads'?)``); this module imports nothing of the runner's, so
every layer, the command line's fast paths included, may use it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean", "plural"]


def plural(count: int, word: str, many: str | None = None, *, sep: str = "") -> str:
    """``count`` and ``word``, the noun in the plural unless ``count`` is one:
    ``plural(1, "stage")`` is ``"1 stage"``, ``plural(3, "day")`` is ``"3 days"``,
    ``plural(2, "match", "matches")``; ``sep=","`` groups thousands (``"1,000 rows"``)."""
    shown = f"{count:,}" if sep == "," else str(count)
    return f"{shown} {word if count == 1 else (many or word + 's')}"


def did_you_mean(name: str, candidates: Iterable[str], *, ignore_case: bool = False) -> str:
    """`` (did you mean 'x'?)`` for the candidates close to ``name``, or ``""``."""
    options = list(candidates)
    if ignore_case:
        lowered = {c.lower(): c for c in options}
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered),
                                                                n=3, cutoff=0.6)]
    else:
        close = difflib.get_close_matches(name, options, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
