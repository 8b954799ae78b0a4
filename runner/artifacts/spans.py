"""A run's spans on the store: ``spans.jsonl`` and ``spans.sig.json``, its signed
sha256 binding the file to its run (the latest attempt's, or an earlier one's set aside)."""

from __future__ import annotations

import json
import logging

from runner.artifacts.documents import SpansSignature, read_document
from runner.artifacts.layout import RunPaths
from runner.artifacts.signing import sign_document
from runner.artifacts.store import ArtifactStore
from runner.digest import digest_matches, sha256
from runner.errors import ArtifactError, IntegrityError

__all__ = ["read_spans_bytes", "spans_files", "write_spans"]

log = logging.getLogger("runner.artifacts")


def spans_files(run_id: str, attempt: int | None = None) -> tuple[str, str]:
    """Where the spans of ``run_id`` and their signed checksum are: the latest
    attempt's (``attempt`` None) or those of an earlier attempt, moved aside."""
    paths = RunPaths(run_id)
    if attempt is None:
        return paths.spans_file, paths.spans_signature_file
    return paths.attempt_spans_file(attempt), paths.attempt_spans_signature_file(attempt)


def write_spans(store: ArtifactStore, run_id: str, data: bytes) -> None:
    """spans.jsonl and its signed checksum (spans first: a reader never sees a signature
    of spans that are not there yet)."""
    paths = RunPaths(run_id)
    store.write_bytes(paths.spans_file, data)
    signed = sign_document({"run_id": run_id, "sha256": sha256(data)})
    store.write_bytes(paths.spans_signature_file, json.dumps(signed).encode())


def read_spans_bytes(store: ArtifactStore, run_id: str, *, allow_unsigned: bool = False,
                     attempt: int | None = None) -> bytes:
    """spans.jsonl of ``run_id`` (of its earlier ``attempt``) once its signed checksum
    verifies."""
    spans_rel, sig_rel = spans_files(run_id, attempt)
    data = store.read_bytes(spans_rel)
    where = store.url_of(spans_rel)
    try:
        sig = read_document(store, sig_rel, SpansSignature, allow_unsigned=allow_unsigned)
    except ArtifactError as exc:
        if not allow_unsigned:
            raise IntegrityError(f"{where} cannot be verified: {exc}", url=where) from exc
        log.warning("%s is not signed; reading it anyway (--allow-unsigned)", where)
        return data
    if sig.run_id != run_id or not digest_matches(data, sig.sha256):
        if not allow_unsigned:
            raise IntegrityError(f"{where} does not match its signed checksum (modified, or "
                                 "copied from another run)", url=where)
        log.warning("%s does not verify; reading it anyway (--allow-unsigned)", where)
    return data
