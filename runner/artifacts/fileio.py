"""The I/O pieces below :class:`~runner.artifacts.store.ArtifactStore`.

A writer that hashes what it writes, storage exceptions translated into
:class:`ArtifactError` naming the URL, and the local-filesystem primitives: a
temporary name beside a target, an exclusive create whose content is complete
before its name exists, an appender kept open, and Linux's ``syncfs``.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import inspect
import os
import posixpath
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import fsspec

from runner.errors import ArtifactError, StorageUnavailableError

__all__ = ["SYNCFS", "Appender", "HashingWriter", "create_local", "file_stamp",
           "ranged_reads_past", "takes_mode", "temp_beside", "translated"]


class HashingWriter:
    """A binary file wrapper that computes sha256 and size of what is written."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._hash = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._hash.update(view)
        self.size += view.nbytes
        self._fh.write(view)
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:  # the store closes the real file, after fsync
        self.closed = True

    def writable(self) -> bool:
        return True

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


@contextmanager
def translated(url: str, action: str) -> Iterator[None]:
    """Any storage exception raised inside as an :class:`ArtifactError` naming ``url``."""
    try:
        yield
    except ArtifactError:
        raise
    except FileNotFoundError as exc:
        raise ArtifactError(f"{action} {url}: not found", url=url, missing=True) from exc
    except PermissionError as exc:
        raise ArtifactError(f"{action} {url}: permission denied ({exc})", url=url) from exc
    except Exception as exc:  # fsspec back ends raise anything: botocore, aiohttp, OSError
        if _no_answer(exc):
            raise StorageUnavailableError(f"{action} {url}: its server does not answer "
                                          f"({type(exc).__name__}: {exc})", url=url) from exc
        raise ArtifactError(f"{action} {url}: {type(exc).__name__}: {exc}", url=url) from exc


_NO_ANSWER = frozenset({"ConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                        "ClientConnectorError", "ServerTimeoutError", "TimeoutError",
                        "gaierror"})
"""Classes (by name: botocore, aiohttp and urllib3 are optional) that say no answer came:
refused, no such host, timed out. The builtin ConnectionError and TimeoutError are here."""


def _no_answer(exc: BaseException) -> bool:
    """Whether ``exc``, or what it was raised from, is a server that did not answer."""
    seen: BaseException | None = exc
    for _ in range(5):  # back ends wrap: s3fs and gcsfs re-raise as OSError
        if seen is None:
            return False
        if any(cls.__name__ in _NO_ANSWER for cls in type(seen).__mro__):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def temp_beside(target: str) -> str:
    """A fresh hidden temporary name in ``target``'s folder (a rename then publishes it)."""
    return posixpath.join(posixpath.dirname(target),
                          f".{posixpath.basename(target)}.{secrets.token_hex(4)}")


class Appender:
    """A local file of a store kept open for :meth:`ArtifactStore.append_bytes`
    (:meth:`ArtifactStore.appender`): a journal appended to after every step pays
    no open and close per line."""

    def __init__(self, rel: str, fd: int) -> None:
        self.rel, self.fd = rel, fd

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def load_syncfs() -> Callable[[int], int] | None:
    """Linux's ``syncfs(fd)`` (through ctypes, which lets go of the GIL while it
    runs), or None where the C library has none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn


SYNCFS = load_syncfs()


def ranged_reads_past(fs: fsspec.AbstractFileSystem) -> int | None:
    """The size past which ``fs`` reads a whole file in concurrent ranges, so that it
    asks every file's size first (s3fs: its block size, and a HEAD before each read);
    None when it reads a file with one request anyway."""
    cat = getattr(type(fs), "_cat_file", None)
    if cat is None or "max_concurrency" not in inspect.signature(cat).parameters:
        return None
    return int(getattr(fs, "default_block_size", 0) or 0) or None


def file_stamp(fs: fsspec.AbstractFileSystem, path: str) -> float | bool:
    """Whether the file ``path`` is there: its last-modified time (epoch seconds) when
    ``fs`` gives one, else True; False when it is missing. On S3 one HEAD (s3fs's own
    ``info`` lists the key as a prefix as well when it is missing, to find a folder)."""
    head = getattr(fs, "call_s3", None)
    if head is not None:
        bucket, key, version = fs.split_path(path)
        try:
            found = head("head_object", getattr(fs, "kwargs", {}), Bucket=bucket, Key=key,
                         **({"VersionId": version} if version else {}))  # as s3fs's info
        except FileNotFoundError:
            return False
        stamp = found.get("LastModified")
        return float(stamp.timestamp()) if stamp is not None else True
    try:
        return float(fs.modified(path).timestamp())
    except FileNotFoundError:
        return False
    except (NotImplementedError, OSError):  # a back end without times
        return bool(fs.exists(path))


def takes_mode(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether the back end's own ``pipe_file`` knows ``mode`` (fsspec's generic one
    checks, then writes: not atomic)."""
    from fsspec.asyn import AsyncFileSystem

    own = getattr(type(fs), "_pipe_file", None) or type(fs).pipe_file
    generic = (fsspec.AbstractFileSystem.pipe_file, AsyncFileSystem._pipe_file)
    return own not in generic and "mode" in inspect.signature(own).parameters


def create_local(target: str, data: bytes) -> bool:
    """Exclusive create on a filesystem: the content is complete before the name exists."""
    parent = posixpath.dirname(target)
    os.makedirs(parent, exist_ok=True)  # noqa: PTH103
    tmp = temp_beside(target)
    with open(tmp, "xb") as fh:  # noqa: PTH123 - a local fsspec path
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, target)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # no hard links here (some FUSE and SMB mounts): O_EXCL, then the content
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    finally:
        os.unlink(tmp)  # noqa: PTH108
    return True
