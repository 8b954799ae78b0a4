"""The sha256 of bytes or of a file, and the one check of data against a digest
recorded for it (a checkpoint index, run.json's results entry, a spans signature,
the check cache)."""

from __future__ import annotations

__all__ = ["digest_matches", "sha256", "sha256_file"]


def sha256(data: bytes) -> str:
    """The hex sha256 of ``data``."""
    import hashlib  # here: --help and most commands need none of OpenSSL

    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str:
    """The hex sha256 of the file at ``path``, read in chunks."""
    import hashlib

    with open(path, "rb") as fh:  # noqa: PTH123
        return hashlib.file_digest(fh, "sha256").hexdigest()


def digest_matches(data: bytes, expected: object) -> bool:
    """Whether ``data`` has the hex sha256 ``expected`` (anything else, e.g. None or a
    number read from a damaged document, never matches)."""
    return isinstance(expected, str) and sha256(data) == expected
