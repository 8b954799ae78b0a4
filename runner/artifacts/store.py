"""One chokepoint for artifact I/O on any fsspec URL.

Every read and write goes through :class:`ArtifactStore`, which maps the
zoo of storage exceptions onto :class:`ArtifactError` with the URL named (a server that
does not answer: :class:`StorageUnavailableError`, exit 4), and
makes writes atomic: a temporary name and a rename on filesystems, a single
PUT on object stores, so a reader never sees half a file. :meth:`ArtifactStore.create`
writes a file only if none is there, atomically where the back end allows it
(the run lease is built on it), and a store :meth:`ArtifactStore.fenced` by a
check refuses every write once that check fails (a run that lost its lease).
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import hashlib
import io
import logging
import os
import posixpath
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from runner.artifacts.fileio import (
    SYNCFS,
    Appender,
    HashingWriter,
    create_local,
    file_stamp,
    ranged_reads_past,
    takes_mode,
    temp_beside,
    translated,
)
from runner.errors import ArtifactError

__all__ = ["ArtifactStore"]

_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory", "http", "https"}
# Back ends whose ``pipe_file(..., mode="create")`` is a conditional write on the
# server: S3 ``If-None-Match: *`` (s3fs), GCS ``ifGenerationMatch=0`` (gcsfs).
_CONDITIONAL_CREATE = {"s3", "s3a", "gs", "gcs"}

log = logging.getLogger("runner.artifacts")

# fsspec's memory filesystem checks and writes in two steps: one lock per process
# makes "create if absent" atomic there (memory:// is one process's anyway).
_MEMORY_CREATE = threading.Lock()
_warned_no_atomic_create: set[str] = set()


class ArtifactStore:
    """A folder of artifacts at ``root`` (any fsspec URL or local path)."""

    def __init__(self, root: str | os.PathLike[str],
                 storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = str(root).rstrip("/") or "/"
        self.storage_options = dict(storage_options or {})
        with translated(self.url, "cannot open artifact store"):
            fs, path = url_to_fs(self.url, **self.storage_options)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = path.rstrip("/") or "/"
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        self.local = "file" in protocols or "local" in protocols
        self.object_store = bool(set(protocols) & _OBJECT_STORES)
        self.protocols: frozenset[str] = frozenset(protocols)
        self._fence: Callable[[], None] | None = None
        self._ranges_past = ranged_reads_past(fs)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def url_of(self, *parts: str) -> str:
        """A user-facing location for ``parts``: a local path or a full URL."""
        rel = posixpath.join(*parts) if parts else ""
        return posixpath.join(self.url, rel) if rel else self.url

    def fenced(self, check: Callable[[], None]) -> ArtifactStore:
        """This store, calling ``check`` before every write, create and delete (and
        again before a write lands): once ``check`` raises, nothing more is written.

        The run lease fences the checkpoint writer with it, so a run that lost its
        lease to another process cannot overwrite that process's run.json.
        """
        twin = copy.copy(self)
        twin._fence = check
        return twin

    def _check_fence(self) -> None:
        if self._fence is not None:
            self._fence()

    # ------------------------------------------------------------ checks

    def check(self) -> None:
        """Fail early (before any stage runs) when the root cannot be written."""
        probe = self.path(f".runner-probe-{secrets.token_hex(4)}")
        with translated(self.url, "artifact store is not usable:"):
            if self.local:
                self.fs.makedirs(self.root, exist_ok=True)
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm_file(probe)

    # ------------------------------------------------------------ bytes

    def write_bytes(self, rel: str, data: bytes, *, durable: bool = True) -> None:
        """Write atomically: readers see the old file or the new one, never half."""
        with self.open_atomic(rel, durable=durable) as fh:
            fh.write(data)

    @contextmanager
    def open_atomic(self, rel: str, *, durable: bool = True) -> Iterator[HashingWriter]:
        """A file to stream into; it appears under ``rel`` only if the block succeeds.

        Locally: a temporary name in the same folder, fsync (when ``durable``), rename.
        On object stores: one PUT of the whole content at the end. The writer
        hashes what passes through it (``.sha256``, ``.size``).
        """
        target = self.path(rel)
        with translated(self.url_of(rel), "cannot write"):
            self._check_fence()
            if not self.local:
                buffer = io.BytesIO()
                writer = HashingWriter(buffer)
                yield writer
                self._check_fence()
                self.fs.pipe_file(target, buffer.getvalue())
                return
            parent = posixpath.dirname(target)
            self.fs.makedirs(parent, exist_ok=True)
            tmp = temp_beside(target)
            try:
                with open(tmp, "wb") as fh:  # noqa: PTH123 - a local fsspec path
                    writer = HashingWriter(fh)
                    yield writer
                    fh.flush()
                    if durable:
                        os.fsync(fh.fileno())
                self._check_fence()
                os.replace(tmp, target)  # noqa: PTH105
            except BaseException:
                if os.path.exists(tmp):  # noqa: PTH110
                    os.unlink(tmp)  # noqa: PTH108
                raise

    def write_local(self, rel: str, write: Callable[[str], None], *,
                    durable: bool = True) -> tuple[str, int]:
        """Write ``rel`` atomically through ``write(path)``, a library's own file writer
        (Arrow writing Parquet natively, not through a Python file object); the
        sha256 and size of the file, read back before it takes its name. Local
        filesystems only (:attr:`local`); elsewhere stream with :meth:`open_atomic`.
        In two halves, :meth:`write_temp` and :meth:`publish_temp`, for a caller that
        hashes on another thread than it writes.
        """
        return self.publish_temp(rel, self.write_temp(rel, write), durable=durable)

    def write_temp(self, rel: str, write: Callable[[str], None]) -> str:
        """``write(path)`` into a temporary name beside ``rel``, returned; nothing is
        under ``rel`` until :meth:`publish_temp` (:meth:`discard_temp` drops it)."""
        if not self.local:
            raise ArtifactError(f"cannot write {self.url_of(rel)} through a local path: "
                                "the store is not a local filesystem", url=self.url_of(rel))
        target = self.path(rel)
        with translated(self.url_of(rel), "cannot write"):
            self._check_fence()
            parent = posixpath.dirname(target)
            self.fs.makedirs(parent, exist_ok=True)
            tmp = temp_beside(target)
            try:
                write(tmp)
            except BaseException:
                self.discard_temp(tmp)
                raise
            return tmp

    def publish_temp(self, rel: str, tmp: str, *, durable: bool = True) -> tuple[str, int]:
        """The sha256 and size of ``tmp`` (from :meth:`write_temp`), read back; fsync
        when ``durable``; then renamed to ``rel``. ``tmp`` is gone either way."""
        with translated(self.url_of(rel), "cannot write"):
            try:
                with open(tmp, "rb") as fh:  # noqa: PTH123 - a local fsspec path
                    digest = hashlib.file_digest(fh, "sha256").hexdigest()
                    size = os.fstat(fh.fileno()).st_size
                    if durable:
                        os.fsync(fh.fileno())
                self._check_fence()
                os.replace(tmp, self.path(rel))  # noqa: PTH105
            except BaseException:
                self.discard_temp(tmp)
                raise
            return digest, size

    @staticmethod
    def discard_temp(tmp: str) -> None:
        """Remove a temporary file of :meth:`write_temp` (gone already: nothing to do)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # noqa: PTH108

    def create(self, rel: str, data: bytes) -> bool:
        """Write ``data`` to ``rel`` only if nothing is there yet: True when this call
        created the file, False when it already existed. Readers see all of it or nothing.

        Atomic, so that of many processes creating one name exactly one wins: a
        hard link of a complete temporary file on filesystems (``link`` fails when
        the name exists, on local disks and NFS alike); a conditional PUT on S3
        (``If-None-Match: *``) and GCS (``ifGenerationMatch=0``, through the
        back end's ``pipe_file(mode="create")``); a process-wide lock on
        ``memory://``. Any other back end checks, then writes, and says once that
        two creators can both win there.
        """
        target = self.path(rel)
        with translated(self.url_of(rel), "cannot create"):
            self._check_fence()
            if self.local:
                return create_local(target, data)
            if "memory" in self.protocols:
                with _MEMORY_CREATE:
                    if self.fs.exists(target):
                        return False
                    self.fs.pipe_file(target, data)
                    return True
            if self.protocols & _CONDITIONAL_CREATE and takes_mode(self.fs):
                try:
                    self.fs.pipe_file(target, data, mode="create")
                except FileExistsError:
                    return False
                except OSError:
                    # S3 answers 409 ConditionalRequestConflict to a conditional PUT
                    # racing another one on the same key: the other one wins
                    if self.fs.exists(target):
                        return False
                    raise
                return True
            if self.url not in _warned_no_atomic_create:
                _warned_no_atomic_create.add(self.url)
                log.warning("the artifact store %s (%s) has no atomic create: two runs of one "
                            "run id started at the same moment may both start", self.url,
                            "/".join(sorted(self.protocols)))
            if self.fs.exists(target):
                return False
            self.fs.pipe_file(target, data)
            return True

    def append_bytes(self, rel: str, data: bytes, *, durable: bool = True,
                     into: Appender | None = None) -> None:
        """Append ``data`` to ``rel`` in one write (created when missing), on local
        filesystems only: object stores have no append (write the whole file instead).
        ``into``: ``rel`` kept open by :meth:`appender`, written through.

        A process killed during the call leaves at most a torn tail, never a gap.
        """
        if not self.local:
            raise ArtifactError(f"cannot append to {self.url_of(rel)}: the store has no "
                                "append", url=self.url_of(rel))
        with translated(self.url_of(rel), "cannot append to"):
            self._check_fence()
            if into is not None and (into.rel != rel or into.fd < 0):
                raise ValueError(f"the file kept open is {into.rel} (fd {into.fd})")
            fd = into.fd if into is not None else os.open(
                self.path(rel), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if durable:
                    os.fsync(fd)
            finally:
                if into is None:
                    os.close(fd)

    def appender(self, rel: str) -> Appender:
        """``rel`` kept open for many :meth:`append_bytes` (one write each, fenced the
        same way), created when missing; local filesystems only."""
        if not self.local:
            raise ArtifactError(f"cannot append to {self.url_of(rel)}: the store has no "
                                "append", url=self.url_of(rel))
        with translated(self.url_of(rel), "cannot append to"):
            self._check_fence()
            fd = os.open(self.path(rel), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return Appender(rel, fd)

    def sync(self, rel: str) -> None:
        """Make a file written with ``durable=False`` durable (a no-op off local disks)."""
        if not self.local:
            return
        with translated(self.url_of(rel), "cannot sync"):
            fd = os.open(self.path(rel), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def sync_many(self, rels: list[str]) -> None:
        """Make many files written with ``durable=False`` durable at once (a no-op off
        local disks): on Linux one ``syncfs`` of the store's filesystem (one journal
        commit and one cache flush for all of them, their folders' entries included),
        elsewhere an fsync of each."""
        if not self.local or not rels:
            return
        if SYNCFS is None:
            for rel in rels:
                self.sync(rel)
            return
        with translated(self.url, "cannot sync"):
            fd = os.open(self.path(rels[0]), os.O_RDONLY)
            try:
                if SYNCFS(fd) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)

    def read_bytes(self, rel: str, *, limit: int | None = None,
                   size: int | None = None) -> bytes:
        """The file's bytes; with ``limit``, at most that many (a file the store may
        have grown is never read whole). ``size``: the file's size as the caller knows
        it (an object's reference says it), None for a document (small): one request
        reads it, unless it is large enough for the back end to read in ranges."""
        path = self.path(rel)
        with translated(self.url_of(rel), "cannot read"):
            if limit is not None:
                data: bytes = self.fs.cat_file(path, start=0, end=limit)
            elif self._ranges_past is not None and (size or 0) <= self._ranges_past:
                data = self.fs.cat_file(path, max_concurrency=1)
            else:
                data = self.fs.cat_file(path)
            return data

    def exists(self, rel: str) -> bool:
        """Whether the file ``rel`` is there (one request on S3: :meth:`presence`)."""
        with translated(self.url_of(rel), "cannot check"):
            return file_stamp(self.fs, self.path(rel)) is not False

    def listdir(self, rel: str) -> list[str]:
        """Names directly under ``rel`` (empty when it does not exist)."""
        base = self.path(rel)
        with translated(self.url_of(rel), "cannot list"):
            try:
                entries = self.fs.ls(base, detail=False, refresh=True)
            except FileNotFoundError:
                return []
        return sorted(posixpath.basename(str(e).rstrip("/")) for e in entries)

    def delete(self, rel: str, *, recursive: bool = False) -> None:
        with translated(self.url_of(rel), "cannot delete"):
            self._check_fence()
            if self.fs.exists(self.path(rel)):
                self.fs.rm(self.path(rel), recursive=recursive)

    def newest_modified(self, rel: str) -> float | None:
        """The latest last-modified time (epoch seconds) of the files under ``rel``
        (None: no file, or a back end that does not say)."""
        with translated(self.url_of(rel), "cannot list"):
            try:
                found = self.fs.find(self.path(rel), withdirs=False)
            except FileNotFoundError:
                return None
        stamps = [self.modified(posixpath.relpath(str(f), self.root)) for f in found]
        known = [s for s in stamps if s is not None]
        return max(known) if known else None

    def size(self, rel: str) -> int | None:
        """The file's size in bytes (None: missing, or a back end that does not say)."""
        with translated(self.url_of(rel), "cannot stat"):
            try:
                return int(self.fs.size(self.path(rel)))
            except (NotImplementedError, FileNotFoundError, OSError, TypeError):
                return None

    def presence(self, rel: str) -> float | bool:
        """Whether the file ``rel`` is there: its last-modified time (epoch seconds) when
        the back end gives one, else True; False when it is missing. One request on S3."""
        with translated(self.url_of(rel), "cannot stat"):
            return file_stamp(self.fs, self.path(rel))

    def modified(self, rel: str) -> float | None:
        """Last-modified time (epoch seconds) when the back end knows it."""
        with translated(self.url_of(rel), "cannot stat"):
            try:
                stamp = self.fs.modified(self.path(rel))
            except (NotImplementedError, FileNotFoundError, OSError):
                return None
        return float(stamp.timestamp())
