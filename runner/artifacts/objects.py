"""Content-addressed objects on the artifact store: bytes stored once, by their sha256.

    objects/<ab>/<cdef...>      the bytes whose sha256 is ``abcdef...`` (64 hex digits)

A put of an object that is there already writes nothing (two runs that produce the
same frame store it once). A new object takes its name atomically and only when
complete, so two processes putting the same object at once never leave a torn file:
a hard link of a complete temporary file on filesystems, a conditional PUT on S3 and
GCS (:meth:`ArtifactStore.create`). The store is untrusted input: every read checks
the bytes against their name and raises :class:`IntegrityError` naming the object.

:func:`sweep_objects` deletes the objects no given reference set names (``runs
prune``). A put racing the sweep is safe through a grace age: an object last
modified less than ``grace`` seconds ago is never deleted, and a put that finds its
object already there refreshes it once it is older than half the grace (``utime``
on filesystems; the same bytes written again on object stores, which have no
touch), so whoever is about to reference an object keeps it alive. The sweep
checks the age again just before each delete.

Pickles. A field pickled for a run is signed and bound to its place in that run
(:mod:`runner.artifacts.signing`); an object is shared by runs, so it cannot be bound
to one. A pickle kept as an object is signed for :func:`object_binding` (kind
``object`` and the field's name), with the same key: a store written under another
key, or bytes not signed by runner, still never reach ``pickle.loads``. What binds an
object to its run and step is the reference to it: the signed checkpoint index or
cache entry that names its digest, which every read checks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from runner.artifacts.store import ArtifactStore
from runner.digest import sha256, sha256_file
from runner.errors import ArtifactError, IntegrityError

__all__ = [
    "DEFAULT_GRACE",
    "OBJECTS",
    "ObjectRef",
    "ObjectStore",
    "SweepReport",
    "is_digest",
    "object_binding",
    "object_path",
    "sweep_objects",
]

OBJECTS = "objects"
DEFAULT_GRACE = 24 * 3600.0
"""Seconds an object is kept after its last put, referenced or not (a run that put it
may not have written its reference yet)."""

_DIGEST = re.compile(r"[0-9a-f]{64}")
_PREFIX = re.compile(r"[0-9a-f]{2}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

log = logging.getLogger("runner.artifacts")


def is_digest(text: object) -> bool:
    """Whether ``text`` is a sha256 in hex (lower case), as object names are."""
    return isinstance(text, str) and _DIGEST.fullmatch(text) is not None


def object_path(digest: str) -> str:
    """``objects/ab/cdef...`` for ``digest``; anything but 64 hex digits is refused, so a
    document on the store cannot point a reader outside ``objects/``."""
    if not is_digest(digest):
        raise IntegrityError(f"{digest!r} is not an object digest (64 hex digits)",
                             url=str(digest)[:80])
    return f"{OBJECTS}/{digest[:2]}/{digest[2:]}"


def object_binding(field: str) -> dict[str, Any]:
    """What a pickled field kept as an object is signed for (see the module docstring)."""
    return {"kind": "object", "field": field}


@dataclass(frozen=True)
class ObjectRef:
    """An object put on the store: its digest, its size and whether this put wrote it."""

    digest: str
    size: int
    written: bool


@dataclass(frozen=True)
class SweepReport:
    """What a sweep deleted (or would delete, dry run), their bytes, what it kept as
    too young, how many digests were referenced; ``skipped``: why it deleted nothing
    (the references could not all be read)."""

    deleted: list[str]
    kept_young: list[str]
    referenced: int
    bytes: int = 0
    skipped: str = ""


class ObjectStore:
    """The objects of one artifact store."""

    def __init__(self, store: ArtifactStore, *, grace: float = DEFAULT_GRACE) -> None:
        self.store = store
        self.grace = grace
        self._young: dict[str, float] = {}
        """On an object store, the objects this one found or put, with their last-modified
        time: one younger than half the grace is not asked about again (nobody may sweep
        it before it is twice that age); one found missing on a read is forgotten."""

    def __repr__(self) -> str:
        return f"ObjectStore({self.store.url!r})"

    def url_of(self, digest: str) -> str:
        return self.store.url_of(object_path(digest))

    # ------------------------------------------------------------ put

    def put_bytes(self, data: bytes) -> ObjectRef:
        """Store ``data`` under its sha256 unless it is there already."""
        digest = sha256(data)
        rel = object_path(digest)
        if self._present(rel, refresh=lambda: self.store.write_bytes(rel, data)):
            return ObjectRef(digest, len(data), written=False)
        written = self.store.create(rel, data)
        self._remember(rel)
        return ObjectRef(digest, len(data), written=written)

    def put_file(self, path: str) -> ObjectRef:
        """Store the local file at ``path`` under its sha256, and remove ``path``.

        On a local store the file itself takes the object's name (a hard link: no copy,
        after an fsync: an object that has its name is whole, so a later put that finds
        it there may trust it), so write it on the store's filesystem
        (:meth:`write_temp` does). An object found there with another size than
        ``path`` (torn by a machine that stopped before it reached the disk) is
        replaced by it.
        """
        try:
            digest, size = sha256_file(path), os.path.getsize(path)  # noqa: PTH202
        except OSError as exc:
            raise ArtifactError(f"cannot read {path}: {exc}", url=path) from exc
        rel = object_path(digest)
        try:
            if self._present(rel, refresh=lambda: self._upload(rel, path)):
                if self.store.local and self._torn(rel, size):
                    self._replace(rel, path)
                    return ObjectRef(digest, size, written=True)
                return ObjectRef(digest, size, written=False)
            if self.store.local:
                written = self._link(rel, path)
            else:
                with open(path, "rb") as fh:  # noqa: PTH123
                    written = self.store.create(rel, fh.read())
                self._remember(rel)
            return ObjectRef(digest, size, written=written)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # noqa: PTH108

    def write_temp(self, write: Callable[[str], None], *, name: str = "new") -> str:
        """A local temporary file written by ``write(path)``, for :meth:`put_file`:
        beside the objects on a local store (so it can take an object's name without a
        copy; ``objects/tmp/.<name>.<random>``, ``name`` saying what it is for), in the
        system's temporary folder elsewhere. The first half of :meth:`write_object`,
        for a caller that hashes on another thread."""
        if self.store.local:
            safe = _UNSAFE.sub("-", name)[:120] or "new"
            return self.store.write_temp(f"{OBJECTS}/tmp/{safe}", write)
        fd, tmp = tempfile.mkstemp(prefix="runner-object-")
        os.close(fd)
        try:
            write(tmp)
        except BaseException:
            os.unlink(tmp)  # noqa: PTH108
            raise
        return tmp

    def write_object(self, write: Callable[[str], None]) -> ObjectRef:
        """Store what ``write(path)`` writes to a local file (a library's own writer, as
        Arrow's for Parquet): :meth:`write_temp`, then :meth:`put_file`."""
        return self.put_file(self.write_temp(write))

    def _torn(self, rel: str, size: int) -> bool:
        try:
            return os.path.getsize(self.store.path(rel)) != size  # noqa: PTH202
        except FileNotFoundError:
            return False

    def _replace(self, rel: str, path: str) -> None:
        """Put the complete file ``path`` in place of a torn object (same digest)."""
        with open(path, "rb") as fh:  # noqa: PTH123
            os.fsync(fh.fileno())
        log.warning("object %s was torn (a machine stopped while it was written): "
                    "written again", self.store.url_of(rel))
        os.replace(path, self.store.path(rel))  # noqa: PTH105

    def _present(self, rel: str, *, refresh: Callable[[], None]) -> bool:
        """Whether ``rel`` exists; one older than half the grace is refreshed first.
        One request on object stores (a HEAD), none for an object this one knows young."""
        known = self._young.get(rel)
        if known is not None and time.time() - known <= self.grace / 2:
            return True
        stamp = self.store.presence(rel)  # a bool: missing, or a back end without times
        if isinstance(stamp, bool):
            return stamp
        if time.time() - stamp > self.grace / 2:
            if self.store.local:
                with contextlib.suppress(FileNotFoundError):
                    os.utime(self.store.path(rel))
            else:
                refresh()
            stamp = time.time()
        self._remember(rel, stamp)
        return True

    def _remember(self, rel: str, stamp: float | None = None) -> None:
        """``rel`` is there, last modified at ``stamp`` (None: now), as far as this one
        knows (object stores only: on a filesystem the check costs no round trip)."""
        if not self.store.local:
            self._young[rel] = time.time() if stamp is None else stamp

    def _link(self, rel: str, path: str) -> bool:
        """Give the complete local file ``path`` the name ``rel`` unless it exists."""
        target = self.store.path(rel)
        with open(path, "rb") as fh:  # noqa: PTH123
            os.fsync(fh.fileno())
        os.makedirs(os.path.dirname(target), exist_ok=True)  # noqa: PTH103, PTH120
        try:
            os.link(path, target)
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some FUSE and SMB mounts)
            with open(path, "rb") as fh:  # noqa: PTH123
                return self.store.create(rel, fh.read())
        return True

    def _upload(self, rel: str, path: str) -> None:
        with open(path, "rb") as fh:  # noqa: PTH123
            self.store.write_bytes(rel, fh.read())

    # ------------------------------------------------------------ get

    def exists(self, digest: str) -> bool:
        return self.store.exists(object_path(digest))

    def get_bytes(self, digest: str, *, size: int | None = None) -> bytes:
        """The object's bytes, checked against its name: IntegrityError when they do not
        match (a truncated, swapped or edited object), ArtifactError when it is missing.
        ``size``: as its reference says (a small one is read in one request)."""
        rel = object_path(digest)
        try:
            data = self.store.read_bytes(rel, size=size)
        except ArtifactError as exc:
            if exc.missing:
                self._young.pop(rel, None)
            raise
        if sha256(data) != digest:
            raise IntegrityError(f"object {self.store.url_of(rel)} does not match its digest "
                                 f"(sha256 {sha256(data)[:16]}..., {len(data)} bytes): "
                                 "changed on the store after it was written",
                                 url=self.store.url_of(rel))
        return data

    # ------------------------------------------------------------ sweep

    def digests(self) -> list[str]:
        """Every object on the store (temporary files left by a writer excluded)."""
        found = []
        for prefix in self.store.listdir(OBJECTS):
            if not _PREFIX.fullmatch(prefix):
                continue
            for name in self.store.listdir(f"{OBJECTS}/{prefix}"):
                if is_digest(prefix + name):
                    found.append(prefix + name)
        return found


def sweep_objects(objects: ObjectStore, referenced: Collection[str], *,
                  dry_run: bool = False, now: float | None = None) -> SweepReport:
    """Delete the objects ``referenced`` does not name, once older than the grace age,
    and writers' temporary files as old; return what went (or would go, ``dry_run``).

    ``referenced``: every digest a run or a cache entry names, gathered *before* the
    sweep starts (an object put since is younger than the grace, so it stays).
    """
    store, grace = objects.store, objects.grace
    deleted, young, size = [], [], 0
    for digest in objects.digests():
        if digest in referenced:
            continue
        rel = object_path(digest)
        if not _old(store, rel, grace, now):
            young.append(digest)
            continue
        if dry_run or _old(store, rel, grace, now):  # again: a put may have refreshed it
            deleted.append(digest)
            size += store.size(rel) or 0
            if not dry_run:
                store.delete(rel)
    for rel in _temporary_files(store):
        if _old(store, rel, grace, now) and not dry_run:
            store.delete(rel)
    if deleted:
        log.info("%s %d unreferenced objects from %s", "would delete" if dry_run else "deleted",
                 len(deleted), store.url)
    return SweepReport(deleted=deleted, kept_young=young, referenced=len(referenced),
                       bytes=size)


def _old(store: ArtifactStore, rel: str, grace: float, now: float | None) -> bool:
    """Last modified more than ``grace`` seconds ago (unknown age: never old)."""
    stamp = store.modified(rel)
    return stamp is not None and (now if now is not None else time.time()) - stamp > grace


def _temporary_files(store: ArtifactStore) -> list[str]:
    """Temporary files of writers that died before publishing (dot names)."""
    out: list[str] = []
    for folder in store.listdir(OBJECTS):
        if _PREFIX.fullmatch(folder) or folder == "tmp":
            out.extend(f"{OBJECTS}/{folder}/{name}"
                       for name in store.listdir(f"{OBJECTS}/{folder}") if name.startswith("."))
    return out
