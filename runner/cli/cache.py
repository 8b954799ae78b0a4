"""What ``runner list`` and ``runner validate`` found, kept while nothing it rests on changes.

Checking a manifest means pydantic for the manifest and, for ``validate``, importing
every stage module (pandas, scikit-learn ...): about a second, where the command line
should answer in a third of one. As mypy and pytest do, the outcome of a check that
*passed* is kept in a small JSON file, and reused only while everything it depends
on is as it was:

- the key: the manifest's bytes (sha256), the path as given and resolved, the
  ``--path`` folders, ``sys.path``, the interpreter, runner's version and the
  ``RUNNER_*`` environment;
- every file of every module the check imported: size and mtime (ns); the sha256
  too for files outside the interpreter's installation (the project's own code and
  the stage modules, where an edit may keep the size within one clock tick). As git
  does, the sha256 is read back only for a file whose mtime is within
  :data:`RACY_NS` of when the outcome was kept: an edit after that moves the mtime
  past it, so an older file whose size and mtime match is unchanged without being
  read (hashing every project file was most of a lookup's time);
- the folders those files and ``sys.path``'s entries are in (mtime): a new module
  that would shadow one, a distribution installed with new entry points.

Any difference, and the check runs in full. A failed check is never kept, so every
error and exit code is the full check's own. ``RUNNER_CACHE_DIR`` says where
(default ``$XDG_CACHE_HOME/runner``, else ``~/.cache/runner``); ``--no-cache`` or
``RUNNER_NO_CACHE=1`` turn it off. A cache that cannot be read or written is
ignored. What a stage module reads at import time besides Python files is not
tracked: use ``--no-cache`` after changing such a file.
"""

# os.path on purpose: a lookup stats a thousand files and more
# ruff: noqa: PTH100, PTH111, PTH112, PTH113, PTH116, PTH117, PTH118, PTH120

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runner.digest import digest_matches, sha256, sha256_file

__all__ = ["MAX_ENTRIES", "Check", "cache_dir"]

FORMAT = 2
MAX_ENTRIES = 64
"""Most kept outcomes; the oldest go first."""
RACY_NS = 2_000_000_000
"""A file modified less than this before its outcome was kept may change again with
the same size and mtime (coarse timestamps: 2 s on FAT, 1 s on HFS+): its content is
checked."""


def cache_dir() -> Path | None:
    """Where outcomes are kept: ``RUNNER_CACHE_DIR``, else the XDG cache folder; None
    without a home to put it in (never a folder relative to the current one)."""
    explicit = os.environ.get("RUNNER_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "runner" if os.path.isabs(base) else None


def _installed_roots() -> tuple[str, ...]:
    roots = {os.path.join(os.path.realpath(p), "") for p in (sys.prefix, sys.base_prefix,
                                                              sys.exec_prefix)}
    return tuple(roots)


def _module_files() -> list[str]:
    files = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and os.path.isfile(file):
            files.add(os.path.realpath(file))
    return sorted(files)


def _folders(files: Iterable[str]) -> list[str]:
    folders = {os.path.dirname(f) for f in files}
    folders.update(os.path.realpath(p or ".") for p in sys.path)
    return sorted(f for f in folders if os.path.isdir(f))


class Check:
    """One command's check of one manifest: :meth:`lookup` its kept outcome, or
    :meth:`keep` the outcome of a full check that passed."""

    def __init__(self, command: str, manifest: str, *, folders: Iterable[Path | str] = (),
                 enabled: bool = True) -> None:
        self.enabled = enabled and not os.environ.get("RUNNER_NO_CACHE")
        self.file: Path | None = None
        if not self.enabled:
            return
        try:
            text = Path(manifest).read_bytes()
        except OSError:
            self.enabled = False  # the full check says why, in its words
            return
        from runner import __version__

        key = {
            "format": FORMAT, "command": command, "runner": __version__,
            "python": sys.version, "executable": sys.executable,
            "manifest": manifest, "manifest_path": os.path.realpath(manifest),
            "manifest_sha256": sha256(text),
            "folders": [os.path.abspath(os.fspath(f)) for f in folders],
            "sys_path": list(sys.path),
            "env": {k: v for k, v in sorted(os.environ.items())
                    if k.startswith("RUNNER_") and k not in ("RUNNER_CACHE_DIR",
                                                             "RUNNER_NO_CACHE")},
        }
        self.key = key
        digest = sha256(json.dumps(key, sort_keys=True).encode())[:40]
        folder = cache_dir()
        self.file = folder / f"{command}-{digest}.json" if folder is not None else None

    def lookup(self) -> Any:
        """The kept outcome, or None when there is none or anything it rests on changed."""
        if self.file is None:
            return None
        try:
            doc = json.loads(self.file.read_text(encoding="utf-8"))
            if doc.get("key") != self.key:
                return None
            if not _files_unchanged(doc["files"], racy_from=doc["kept_ns"] - RACY_NS):
                return None
            for path, mtime in doc["folders"]:
                if os.stat(path).st_mtime_ns != mtime:
                    return None
            return doc["outcome"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def keep(self, outcome: Any) -> None:
        """Keep the outcome of a check that passed, with what it rests on now."""
        if self.file is None:
            return
        with contextlib.suppress(OSError, ValueError, TypeError):
            kept_ns = time.time_ns()  # before the stats: a later edit is after it
            files = _module_files()
            installed = _installed_roots()
            records = []
            for path in files:
                st = os.stat(path)
                sha = None if path.startswith(installed) else sha256_file(path)
                records.append([path, st.st_size, st.st_mtime_ns, sha])
            folders = [[f, os.stat(f).st_mtime_ns] for f in _folders(files)]
            doc = {"key": self.key, "kept_ns": kept_ns, "files": records, "folders": folders,
                   "outcome": outcome}
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_name(f".{self.file.name}.{os.getpid()}.{id(doc):x}")
            tmp.write_text(json.dumps(doc), encoding="utf-8")
            tmp.replace(self.file)
            _prune(self.file.parent)


def _files_unchanged(records: list[list[Any]], *, racy_from: int) -> bool:
    """Whether every ``[path, size, mtime_ns, sha256 | None]`` still holds: size and
    mtime always; the content only of a file with a sha256 and an mtime at or after
    ``racy_from`` (:data:`RACY_NS`)."""
    for path, size, mtime, sha in records:
        st = os.stat(path)
        if (st.st_size, st.st_mtime_ns) != (size, mtime):
            return False
        if sha is not None and mtime >= racy_from and not digest_matches(
                Path(path).read_bytes(), sha):
            return False
    return True


def _prune(folder: Path) -> None:
    """Keep the newest :data:`MAX_ENTRIES` outcomes."""
    entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    for old in entries[:-MAX_ENTRIES]:
        old.unlink(missing_ok=True)
