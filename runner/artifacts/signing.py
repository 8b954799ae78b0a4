"""The artifact key and every signature on the store: one HMAC-SHA256 scheme.

The store is data that anyone with write access to the bucket can change, so a
reader trusts only what verifies with the key:

* JSON documents (run.json, each checkpoint's index.json, error.json) carry an
  embedded ``"signature": {"key_id", "hmac"}`` over their canonical JSON (sorted
  keys, no spaces) with the signature removed. The document names its own place
  (run id, step folder), which the reader compares with where it found it.
* Pickles start with :data:`PICKLE_HEADER` and an HMAC over their *binding* (what
  the file is: kind, run id, path in the run) and the payload's sha256, so a
  validly signed pickle copied to another run, step or field does not verify.

The key is ``$RUNNER_ARTIFACT_KEY`` when set, else a random key kept in a file
created with mode 0600 on first use: ``$RUNNER_ARTIFACT_KEY_FILE``, or
``$XDG_CONFIG_HOME/runner/artifact.key`` (``~/.config/runner/artifact.key``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import ArtifactError, IntegrityError

__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "PICKLE_HEADER",
    "SIGNATURE_FIELD",
    "SigningKey",
    "canonical_json",
    "default_key_file",
    "load_key",
    "sign_document",
    "sign_pickle",
    "verify_document",
    "verify_pickle",
]

KEY_ENV = "RUNNER_ARTIFACT_KEY"
KEY_FILE_ENV = "RUNNER_ARTIFACT_KEY_FILE"
SIGNATURE_FIELD = "signature"
PICKLE_HEADER = b"RUNNER-PICKLE-V2\n"
_LEGACY_PICKLE_HEADER = b"RUNNER-PICKLE-HMAC-SHA256\n"
_DIGEST = 32

log = logging.getLogger("runner.artifacts")


@dataclass(frozen=True)
class SigningKey:
    """The secret, a short public id of it (to tell "another key" from "tampered"),
    and where it came from (for messages)."""

    secret: bytes
    source: str

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"runner-artifact-key-id\0" + self.secret).hexdigest()[:16]

    def mac(self, data: bytes) -> str:
        return hmac.digest(self.secret, data, "sha256").hex()  # one C call

    def __repr__(self) -> str:  # never the secret
        return f"SigningKey(key_id={self.key_id!r}, source={self.source!r})"


def default_key_file() -> Path:
    """``$RUNNER_ARTIFACT_KEY_FILE``, else ``<XDG config home>/runner/artifact.key``."""
    explicit = os.environ.get(KEY_FILE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "runner" / "artifact.key"


def load_key() -> SigningKey:
    """The artifact key: the environment variable, else the key file (made on first use)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return SigningKey(env.encode(), f"${KEY_ENV}")
    return _key_from_file(str(default_key_file()))


@functools.lru_cache(maxsize=8)
def _key_from_file(path_text: str) -> SigningKey:
    path = Path(path_text)
    try:
        if not path.exists():
            _create_key_file(path)
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ArtifactError(f"cannot read or create the artifact key {path}: "
                            f"{exc.strerror or exc} (set {KEY_ENV} or {KEY_FILE_ENV})",
                            url=str(path)) from exc
    if len(secret) < 16:
        raise ArtifactError(f"the artifact key {path} is empty or too short (16 bytes at "
                            "least); delete it to have a new one made", url=str(path))
    return SigningKey(secret, str(path))


def _create_key_file(path: Path) -> None:
    """Exclusive create, mode 0600 from the start: two processes agree on one key."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first: use theirs
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    log.info("created the artifact key %s", path)


# ---------------------------------------------------------------- documents


def canonical_json(value: Any) -> bytes:
    """The one byte form a document is signed in (sorted keys, no spaces, ASCII)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()


def sign_document(doc: Mapping[str, Any], *, key: SigningKey | None = None,
                  plain: bool = False) -> dict[str, Any]:
    """``doc`` (made JSON-plain) with its embedded signature. ``plain``: the caller
    built it JSON-plain already (str keys, lists, no tuples), so the round trip
    through JSON that makes it so is skipped (a long run's run.json is a megabyte)."""
    key = key or load_key()
    body = {k: v for k, v in doc.items() if k != SIGNATURE_FIELD}
    signed: dict[str, Any] = body if plain else json.loads(json.dumps(body, default=str))
    mac = key.mac(canonical_json(signed))
    signed[SIGNATURE_FIELD] = {"key_id": key.key_id, "hmac": mac}
    return signed


def verify_document(doc: Mapping[str, Any], *, where: str, allow_unsigned: bool = False,
                    key: SigningKey | None = None) -> dict[str, Any]:
    """The document without its signature, once the signature verifies.

    Raises :class:`IntegrityError` when it is missing or wrong; with
    ``allow_unsigned`` logs a warning instead and returns the document.
    """
    body = {k: v for k, v in doc.items() if k != SIGNATURE_FIELD}
    problem = _document_problem(doc.get(SIGNATURE_FIELD), body, key or load_key())
    if problem is not None:
        _refuse(where, problem, allow_unsigned)
    return body


def _document_problem(signature: Any, body: dict[str, Any], key: SigningKey) -> str | None:
    if signature is None:
        return "is not signed"
    if not (isinstance(signature, dict) and isinstance(signature.get("hmac"), str)):
        return "has a malformed signature"
    try:
        expected = key.mac(canonical_json(body))
    except ValueError:  # NaN or infinity: never written by runner
        return "holds values runner never signs"
    if hmac.compare_digest(expected, signature["hmac"]):
        return None
    if signature.get("key_id") != key.key_id:
        return f"was signed with another key (key id {str(signature.get('key_id'))[:16]!r}, " \
               f"ours {key.key_id!r} from {key.source})"
    return "does not verify (modified after it was written)"


def _refuse(where: str, problem: str, allow_unsigned: bool) -> None:
    if allow_unsigned:
        log.warning("%s %s; reading it anyway (--allow-unsigned)", where, problem)
        return
    raise IntegrityError(f"{where} {problem}; refusing to read it (--allow-unsigned reads "
                         "an old or foreign store you trust)", url=where)


# ---------------------------------------------------------------- pickles


def _pickle_mac(key: SigningKey, binding: Mapping[str, Any], payload: bytes) -> bytes:
    message = canonical_json(dict(binding)) + b"\n" + hashlib.sha256(payload).digest()
    return hmac.new(key.secret, message, hashlib.sha256).digest()


def sign_pickle(payload: bytes, *, binding: Mapping[str, Any],
                key: SigningKey | None = None) -> bytes:
    """``payload`` with a header and an HMAC bound to ``binding`` (what and where it is)."""
    return PICKLE_HEADER + _pickle_mac(key or load_key(), binding, payload) + payload


def verify_pickle(data: bytes, *, binding: Mapping[str, Any], where: str,
                  allow_unsigned: bool = False, key: SigningKey | None = None) -> bytes:
    """The pickle payload of ``data`` once it verifies for ``binding``; never unpickles."""
    if data.startswith(PICKLE_HEADER):
        start = len(PICKLE_HEADER)
        digest, payload = data[start:start + _DIGEST], data[start + _DIGEST:]
        if hmac.compare_digest(digest, _pickle_mac(key or load_key(), binding, payload)):
            return payload
        _refuse(where, "does not verify for this run and place (tampered, signed with "
                "another key, or copied from another run, step or field)", allow_unsigned)
        return payload
    if data.startswith(_LEGACY_PICKLE_HEADER):  # signed by an older runner, not bound
        _refuse(where, "is an old-style signed pickle (not bound to its place)",
                allow_unsigned)
        return data[len(_LEGACY_PICKLE_HEADER) + _DIGEST:]
    _refuse(where, "is not a signed pickle", allow_unsigned)
    return data
