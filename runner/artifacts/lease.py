"""The run lease: one live run per run id, on any store, across hosts.

Store files, one per acquisition (``EPOCH`` is 8 digits)::

    runs/<RUN_ID>/lease/<EPOCH>.json   token, host, pid, pid namespace, lease seconds,
                                       renewal interval, renewals, state held|released

Acquiring creates epoch N+1 with the store's atomic create (of many contenders
exactly one wins), and only once epoch N is free: released, or its holder gone.
Epoch files are never reused: release rewrites the holder's own epoch as
``released`` instead of deleting it, so no contender can race a delete and a
re-create; a new holder deletes the epochs before the previous one. The holder
renews only its own epoch (its ``renewals`` counter) every ``interval`` seconds;
a higher epoch means it lost the lease, and :meth:`RunLease.check` (which fences
the run's writes) then fails the run rather than let it overwrite the new holder.

Liveness is judged by observation, never by comparing clocks (hosts' clocks
differ): a contender reads the current epoch and watches its counter. A change
is a live holder: refused (exit 2). No change for one interval plus a margin
means the holder stopped renewing: the contender waits until the epoch has gone
unrenewed for the lease duration on its own monotonic clock, then takes over.
A holder on this host (same host name and pid namespace) whose process is gone
is taken over at once; one whose process is alive is refused at once.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.artifacts.layout import RunPaths
from runner.artifacts.store import ArtifactStore
from runner.errors import ArtifactError, LeaseLostError, UsageError

__all__ = ["DEFAULT_LEASE_SECONDS", "LEASE_ENV", "RunLease", "lease_seconds"]

LEASE_ENV = "RUNNER_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 10.0
FORMAT = 1

log = logging.getLogger("runner.artifacts")

_EPOCH_FILE = re.compile(r"(\d{8})\.json")
_ROUNDS = 50
"""Acquisition attempts (each lost to another contender) before giving up."""


def lease_seconds(env: Mapping[str, str] = os.environ) -> float:
    """The lease duration: ``RUNNER_LEASE_SECONDS`` (1 to 3600), default 10."""
    raw = env.get(LEASE_ENV, "").strip()
    if not raw:
        return DEFAULT_LEASE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 1.0 <= value <= 3600.0:  # also refuses nan
        raise UsageError(f"{LEASE_ENV}={raw!r}: expected a number of seconds from 1 to 3600")
    return value


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _pid_namespace() -> str:
    """This process's pid namespace (a restarted container gets a new one)."""
    try:
        return str(Path("/proc/self/ns/pid").readlink())
    except OSError:
        return ""


def _bounded(value: Any, default: float, low: float, high: float) -> float:
    """A number read from the store, kept within sane bounds (the store is data)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return min(max(number, low), high) if math.isfinite(number) else default


@dataclass(frozen=True)
class _Seen:
    """One read of an epoch file: its bytes (None: gone) and what they say."""

    epoch: int
    raw: bytes | None
    doc: dict[str, Any]

    @property
    def holder(self) -> str:
        return f"pid {self.doc.get('pid', '?')} on {self.doc.get('host', '?')}"

    @property
    def released(self) -> bool:
        return self.doc.get("state") == "released"


@dataclass
class RunLease:
    """The right to run ``run_id``: acquired, renewed by a heartbeat thread, released.

    ``seconds`` is how long a lease its holder stopped renewing blocks the run id
    (``RUNNER_LEASE_SECONDS``); the holder renews every ``interval`` (a quarter of
    it unless given).
    """

    store: ArtifactStore
    run_id: str
    seconds: float = field(default_factory=lease_seconds)
    interval: float = 0.0
    epoch: int = 0
    """The epoch held (0: none yet)."""
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    _renewals: int = 0
    _renewed: float = 0.0
    _lost: str | None = None
    _released: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _io: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        if self.interval <= 0:
            self.interval = self.seconds / 4

    @property
    def folder(self) -> str:
        return RunPaths(self.run_id).lease_dir

    def _rel(self, epoch: int) -> str:
        return f"{self.folder}/{epoch:08d}.json"

    # ------------------------------------------------------------ acquiring

    def acquire(self) -> None:
        """Take the run id, first waiting out a holder that stopped renewing.

        Raises :class:`UsageError` (exit 2) when a live run holds it.
        """
        for _ in range(_ROUNDS):
            top = max(self._epochs(), default=0)
            if top and not self._free(self._read(top)):
                continue  # it moved on while we looked: look again
            if self._take(top + 1):
                return
            time.sleep(random.uniform(0.01, 0.05))  # jitter between contenders
        raise UsageError(f"run {self.run_id!r}: could not take its lease in {_ROUNDS} tries "
                         "(other processes kept taking it); try again")

    def _free(self, seen: _Seen) -> bool:
        """Whether ``seen`` can be succeeded now (False: look again); raises when live."""
        if seen.raw is None:
            return False
        if seen.released:
            return True
        if self._on_this_host(seen):
            pid = seen.doc.get("pid")
            if isinstance(pid, int) and pid > 0 and not _pid_alive(pid):
                log.warning("run %s: taking over the lease of %s (epoch %d): that process "
                            "is gone", self.run_id, seen.holder, seen.epoch)
                return True
            raise self._refusal(seen, "its process is alive on this host")
        return self._wait_out(seen)

    def _on_this_host(self, seen: _Seen) -> bool:
        ns = seen.doc.get("pid_namespace")
        return (seen.doc.get("host") == socket.gethostname()
                and (not ns or not _pid_namespace() or ns == _pid_namespace()))

    def _wait_out(self, seen: _Seen) -> bool:
        """Watch ``seen``'s epoch: refuse once it is renewed, succeed it once it has
        gone unrenewed for its lease duration (this process's monotonic clock)."""
        interval = _bounded(seen.doc.get("interval"), self.interval, 0.05, 900.0)
        lease = _bounded(seen.doc.get("lease_seconds"), self.seconds, 1.0, 3600.0)
        window = 1.5 * interval + 0.5
        poll = min(0.5, max(0.05, interval / 5))
        start = time.monotonic()
        told = False
        while True:
            time.sleep(poll)
            now = self._read(seen.epoch)
            if now.raw != seen.raw:
                if now.raw is None or now.released:
                    return now.released
                raise self._refusal(now, "it keeps renewing its lease")
            waited = time.monotonic() - start
            if waited >= lease:
                log.warning("run %s: taking over the lease of %s (epoch %d), unrenewed for "
                            "%.1fs", self.run_id, seen.holder, seen.epoch, waited)
                return True
            if waited >= window and not told:
                told = True
                log.warning("run %s: the lease of %s (epoch %d) has not been renewed for "
                            "%.1fs; waiting until it has gone unrenewed for %.0fs, then "
                            "taking it over", self.run_id, seen.holder, seen.epoch, waited,
                            lease)

    def live_holder(self) -> str | None:
        """Who holds the run id when that may be a live process, without waiting
        (None: no lease, a released one, or a holder on this host whose process is
        gone). ``runs prune`` keeps a folder with a live holder."""
        top = max(self._epochs(), default=0)
        if not top:
            return None
        seen = self._read(top)
        if seen.raw is None or seen.released:
            return None
        pid = seen.doc.get("pid")
        if self._on_this_host(seen) and isinstance(pid, int) and pid > 0 \
                and not _pid_alive(pid):
            return None
        return seen.holder

    def _refusal(self, seen: _Seen, why: str) -> UsageError:
        return UsageError(
            f"run {self.run_id!r} is being run by {seen.holder} ({why}; lease epoch "
            f"{seen.epoch}); wait for it, or use another --run-id (a run that stops renewing "
            f"its lease is taken over after {self.seconds:.0f}s)")

    def _take(self, epoch: int) -> bool:
        """Create ``epoch``; True when this lease now holds the run id."""
        self._renewals = 0
        start = time.monotonic()
        if not self.store.create(self._rel(epoch), self._doc(epoch, "held")):
            return False
        # Lost after all when a later epoch exists (ours was one a holder had cleaned
        # away) or the file is not ours (a back end that overwrote instead of refusing).
        if max(self._epochs(), default=0) > epoch or (
                self._read(epoch).doc.get("token") != self.token):
            return False
        self.epoch, self._renewed, self._lost = epoch, start, None
        self._clean(before=epoch - 1)
        self._thread = threading.Thread(target=self._beat, name="runner-lease", daemon=True)
        self._thread.start()
        return True

    def _clean(self, *, before: int) -> None:
        """Delete epochs older than ``before`` (the previous one stays, for the record)."""
        for old in self._epochs():
            if old < before:
                try:
                    self.store.delete(self._rel(old))
                except ArtifactError as exc:
                    log.warning("run %s: could not delete an old lease: %s", self.run_id, exc)

    # ------------------------------------------------------------ holding

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self._renew()

    def _renew(self) -> None:
        """Bump this epoch's counter, unless a later epoch says the lease was lost."""
        with self._io:
            if self._stop.is_set() or self._lost is not None:
                return
            try:
                later = max(self._epochs(), default=0)
                if later > self.epoch:
                    self._lose(f"{self._read(later).holder} took it over (epoch {later})")
                    return
                start = time.monotonic()
                self._renewals += 1
                self.store.write_bytes(self._rel(self.epoch), self._doc(self.epoch, "held"),
                                       durable=False)
                self._renewed = start
            except ArtifactError as exc:
                log.warning("run %s: could not renew its lease: %s", self.run_id, exc)

    def check(self) -> None:
        """Raise :class:`LeaseLostError` once this run lost its lease: another process
        took it over, or renewing has failed for so long that one may have."""
        if self._lost is None and self.epoch and not self._released:
            unrenewed = time.monotonic() - self._renewed
            if unrenewed > self.seconds - self.interval:
                self._lose(f"it could not be renewed for {unrenewed:.1f}s")
        if self._lost is not None:
            raise LeaseLostError(self._lost, run_id=self.run_id)

    @property
    def lost(self) -> bool:
        return self._lost is not None

    def _lose(self, reason: str) -> None:
        self._lost = (f"run {self.run_id!r} lost its lease (epoch {self.epoch}): {reason}; "
                      "it stops writing so as not to overwrite the run that took over")
        self._stop.set()
        log.error("%s", self._lost)

    def release(self) -> None:
        """Give the run id back: stop renewing and mark the epoch released.

        Safe to call twice, from any thread or from a signal handler; never raises.
        """
        if self._released:
            return
        self._released = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.seconds)
        if not self.epoch or self._lost is not None:
            return
        if not self._io.acquire(timeout=self.seconds):
            log.warning("run %s: could not release its lease (a renewal hangs); it lapses "
                        "after %.0fs", self.run_id, self.seconds)
            return
        try:
            self.store.write_bytes(self._rel(self.epoch), self._doc(self.epoch, "released"),
                                   durable=False)
        except ArtifactError as exc:
            log.warning("run %s: could not release its lease (it lapses after %.0fs): %s",
                        self.run_id, self.seconds, exc)
        finally:
            self._io.release()

    # ------------------------------------------------------------ files

    def _doc(self, epoch: int, state: str) -> bytes:
        return json.dumps({
            "format": FORMAT, "run_id": self.run_id, "epoch": epoch, "token": self.token,
            "host": socket.gethostname(), "pid": os.getpid(),
            "pid_namespace": _pid_namespace(), "lease_seconds": self.seconds,
            "interval": self.interval, "renewals": self._renewals, "state": state,
            "written": datetime.now(UTC).isoformat(),  # for people; liveness never uses it
        }).encode()

    def _epochs(self) -> list[int]:
        names = self.store.listdir(self.folder)
        return sorted(int(m.group(1)) for n in names if (m := _EPOCH_FILE.fullmatch(n)))

    def _read(self, epoch: int) -> _Seen:
        try:
            raw = self.store.read_bytes(self._rel(epoch))
        except ArtifactError as exc:
            if exc.missing:
                return _Seen(epoch, None, {})
            raise
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        return _Seen(epoch, raw, doc if isinstance(doc, dict) else {})
