"""The runner's one error tree, and the one table of exit codes.

    RunnerError                  the input, the usage or the storage is wrong (exit 2)
    ├── ManifestError            the manifest text or its meaning is wrong
    ├── RegistryError            a stage name registered twice, an unimportable path
    │   └── ModuleImportError    a stage module raised while imported: the user's code
    ├── PlanError                a pipeline cannot be compiled into a plan
    ├── DataError                the user's prices cannot be used as they are
    ├── ArtifactError            storage refused, missing, corrupt or tampered
    │   ├── IntegrityError       a file's checksum or signature does not verify
    │   └── StorageUnavailableError  the store's server does not answer (exit 4)
    ├── UsageError               a front door was called wrongly
    ├── ClusterError             [runner.k8s.errors] the Kubernetes API refused the call
    │   ├── NotFoundError        [runner.k8s.errors] no such run, Job or schedule
    │   └── InvalidObjectError   [runner.k8s.errors] the API server refused an object (HTTP 422)
    ├── InfrastructureError      what the run needs cannot be reached or started (exit 4)
    │   ├── RayUnavailableError  Ray cannot be started here, or its cluster reached
    │   ├── WorkerPoolError      the pool of worker processes did not start
    │   └── ClusterUnavailableError  [runner.k8s.errors] the Kubernetes API server is away
    └── ExecutionError           a run started and failed (exit 1)
        ├── StageFailedError     a stage raised; carries the forensics
        ├── LeaseLostError       another process took the run over (its lease lapsed)
        ├── ContextCollisionError  parallel branches changed one field differently
        ├── UndeclaredWriteError a stage changed a field outside its declared writes
        ├── UndeclaredReadError  a stage looked up a run parameter its reads do not name
        ├── RunFailedError       [runner.k8s.status] a run's Job failed or cannot start
        └── RunInterruptedError  a signal (or the application) stopped the run (exit 128+N)

A class is exported by ``runner.errors``, or by the module named in brackets (its
layer sits above this one). Each class exits with the code of the nearest family in
:data:`EXIT_CODES` (the drawing says it once per family; a test holds drawing, classes
and table together); :func:`exit_code_of` is the one place a front door asks. Every
error carries structured fields; front doors print ``str(error)`` and exit with that
code, never a traceback. Anything else that escapes is a bug in runner: exit
:data:`INTERNAL_ERROR`.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from runner.words import plural

__all__ = [
    "EXIT_CODES",
    "INTERNAL_ERROR",
    "ArtifactError",
    "Collision",
    "ContextCollisionError",
    "DataError",
    "ExecutionError",
    "InfrastructureError",
    "IntegrityError",
    "LeaseLostError",
    "ManifestError",
    "ModuleImportError",
    "PlanError",
    "Problem",
    "RayUnavailableError",
    "RegistryError",
    "RunInterruptedError",
    "RunnerError",
    "StageFailedError",
    "StorageUnavailableError",
    "UndeclaredReadError",
    "UndeclaredWriteError",
    "UsageError",
    "WorkerPoolError",
    "exit_code_of",
]

INTERNAL_ERROR: Final = 3
"""The exit code of anything but a :class:`RunnerError`: a bug in runner itself."""


class _ExitCode:
    """``ErrorClass.exit_code`` and ``error.exit_code``, read from :data:`EXIT_CODES`
    (never set per class: the table is the one place)."""

    def __get__(self, error: RunnerError | None, owner: type[RunnerError]) -> int:
        return exit_code_of(error) if error is not None else _family_code(owner)


class RunnerError(Exception):
    """Root of every error the runner raises on purpose."""

    exit_code: Final = _ExitCode()

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its message and fields, not by calling its constructor again (which
        takes the fields, not the message): an error a stage raised in a worker process
        reaches the driver whole, not as a worker that died."""
        return (_rebuild, (type(self), self.args), dict(vars(self)))


def _rebuild(cls: type[RunnerError], args: tuple[Any, ...]) -> RunnerError:
    return cls.__new__(cls, *args)



@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located by a JSON path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ManifestError(RunnerError):
    """The manifest cannot be read or does not describe valid pipelines."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = [f"invalid manifest {source}:"] + [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class RegistryError(RunnerError):
    """A stage or adapter cannot be registered or imported."""


class ModuleImportError(RegistryError):
    """A module named by the manifest exists but raised while it was imported (a
    syntax error, a ``raise`` or a missing environment variable at module level)."""

    def __init__(self, message: str, *, module: str, where: str = "") -> None:
        super().__init__(message)
        self.module = module
        self.where = where
        """The user's file and line (``my_stages.py line 3, in <module>``), or ""."""


class PlanError(RunnerError):
    """A pipeline cannot be compiled into a plan."""

    def __init__(self, problems: Sequence[Problem], *, source: str = "<manifest>") -> None:
        self.problems = tuple(problems)
        self.source = source
        lines = [f"invalid pipeline in {source}:"] + [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class ArtifactError(RunnerError):
    """Artifact storage cannot be used, or holds something that cannot be trusted."""

    def __init__(self, message: str, *, url: str = "", missing: bool = False) -> None:
        super().__init__(message)
        self.url = url
        self.missing = missing


class IntegrityError(ArtifactError):
    """A stored file does not match its recorded checksum or signature."""


class StorageUnavailableError(ArtifactError):
    """The artifact store's server does not answer (connection refused, no such host, no
    answer in time): infrastructure, exit 4 as :class:`InfrastructureError`, yet an
    ``ArtifactError`` still, so what retries or falls back on a storage failure (the
    lease's renewal, the forensics' local copy) treats it as one."""


class DataError(RunnerError, ValueError):
    """The user's price data cannot be used: its shape, or too little of it.

    Also a ``ValueError``, as a stage that reads a bad file raised before.
    """

    def __init__(self, source: str, problem: str, *, expected: str = "") -> None:
        self.source = source
        self.problem = problem
        self.expected = expected
        """The shape the data should have, in a line (empty when the shape is right)."""
        super().__init__(f"{source}: {problem}" + (f"\n  expected: {expected}" if expected
                                                   else ""))


class UsageError(RunnerError):
    """A front door was called with arguments that cannot work."""


class ExecutionError(RunnerError):
    """A run started and failed."""


class InfrastructureError(RunnerError):
    """What the run needs cannot be reached or started (a Ray cluster, the worker
    processes, the Kubernetes API server): neither the input nor the run is wrong, and
    trying again may work."""


class RayUnavailableError(InfrastructureError):
    """Ray cannot be started here, or the cluster at ``address`` cannot be reached."""

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(message)
        self.address = address
        """The cluster's address as given (``RAY_ADDRESS``), or "" for a local Ray."""


class WorkerPoolError(InfrastructureError):
    """The pool of worker processes did not start (a fork or spawn refused, a worker
    that died while it started)."""

    def __init__(self, message: str, *, workers: int, start_method: str) -> None:
        super().__init__(message)
        self.workers = workers
        self.start_method = start_method


@dataclass(frozen=True)
class Collision:
    """One field that two or more branches changed in incompatible ways."""

    field: str
    branches: tuple[str, ...]
    detail: str = ""

    def __str__(self) -> str:
        who = ", ".join(self.branches)
        extra = f" ({self.detail})" if self.detail else ""
        return f"field {self.field!r} changed by branches {who}{extra}"


class ContextCollisionError(ExecutionError):
    """Parallel branches changed the same context field and no rule resolves it."""

    def __init__(self, collisions: Sequence[Collision], *, group: str = "", run_id: str = "",
                 error_context: str | None = None, records: Sequence[Any] = ()) -> None:
        self.collisions = tuple(collisions)
        self.group = group
        self.run_id = run_id
        """The run it stopped, once the engine knows it ("" where the merge raised)."""
        self.error_context = error_context
        """Where the forensics were written (None until then, or when they could not be)."""
        self.records = tuple(records)
        """The run's step records up to the collision."""
        where = f" at {group}" if group else ""
        lines = [f"context collision{where}:"] + [f"  {c}" for c in self.collisions]
        lines.append(
            "  resolve it with a per-pipeline rule (\"merge\": {FIELD: \"last_wins\"|...}) "
            "or a merge_adapter"
        )
        super().__init__("\n".join(lines))


class UndeclaredWriteError(ExecutionError):
    """A stage that declares ``writes`` changed another field of the context; raised
    where the stage returns, so the stage fails (and the run says which one)."""

    def __init__(self, *, stage: str, fields: Sequence[str], declared: Sequence[str]) -> None:
        self.stage, self.fields, self.declared = stage, tuple(fields), tuple(declared)
        names = ", ".join(repr(f) for f in self.fields)
        plural = "s" if len(self.fields) > 1 else ""
        super().__init__(
            f"stage {stage!r} changed field{plural} {names} of the context, outside the "
            f"writes it declares (writes={list(self.declared)}): add {names} to its "
            f"writes, or leave {'them' if plural else 'it'} unchanged")


class UndeclaredReadError(ExecutionError):
    """A stage that names the run parameters it reads (``reads=["params.NAME"]``) looked
    up another one; raised inside the stage, at the line that looked it up. Not a
    ``KeyError``: a stage that takes a missing key for "not set" must not run on."""

    def __init__(self, *, stage: str, param: Any, declared: Sequence[str]) -> None:
        self.stage, self.param, self.declared = stage, param, tuple(declared)
        super().__init__(
            f"stage {stage!r} reads run parameter {param!r}, outside the parameters its reads "
            f"declare ({', '.join(self.declared)}): add 'params.{param}' to its reads, or "
            "'params' to read every one")


class StageFailedError(ExecutionError):
    """A stage raised; the run stopped and its forensics were written."""

    def __init__(
        self,
        *,
        run_id: str,
        stage: str,
        path: str,
        exc_type: str,
        message: str,
        traceback: str,
        error_context: str | None,
        cause: BaseException | None = None,
        records: Sequence[Any] = (),
        where: str = "",
        user_traceback: str = "",
    ) -> None:
        self.run_id = run_id
        self.stage = stage
        self.path = path
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback
        self.error_context = error_context
        self.original = cause
        self.records = tuple(records)
        self.where = where
        """The last frame in the user's code (``my_stages.py line 11, in bad``), or ""."""
        self.user_traceback = user_traceback
        """The user's frames of ``traceback``, short (see :mod:`runner.tracebacks`)."""
        super().__init__(f"stage {stage!r} at {path} failed: {exc_type}: {message}")


class RunInterruptedError(ExecutionError):
    """The run was stopped on purpose (SIGTERM, SIGINT, or :meth:`DAGRunner.interrupt`):
    no new step started; what completed is checkpointed and ``--resume`` continues it.

    ``forced`` is True when the run could not wind down in time (a second signal, or
    the grace period ran out while a stage still ran). The exit code is the shell's
    for the signal: 143 for SIGTERM, 130 for SIGINT.
    """

    def __init__(
        self,
        *,
        run_id: str,
        signal_name: str,
        signum: int,
        completed: Sequence[str] = (),
        total: int = 0,
        forced: bool = False,
        records: Sequence[Any] = (),
    ) -> None:
        self.run_id = run_id
        self.signal_name = signal_name
        self.signum = signum
        self.completed = tuple(completed)
        self.total = total
        self.forced = forced
        self.records = tuple(records)
        how = "stopped at once" if forced else "stopped"
        super().__init__(f"run {run_id!r} interrupted by {signal_name}: {how} after "
                         f"{len(self.completed)} of {plural(total, 'step')}")


class LeaseLostError(ExecutionError):
    """Another process took over the run's lease: this run stops writing and fails."""

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


EXIT_CODES: Final[Mapping[type[RunnerError], int]] = {
    RunnerError: 2,  # the input, the usage or the storage: fix it, then run again
    ExecutionError: 1,  # the run started and failed (a stage, a merge, its Job)
    InfrastructureError: 4,  # Ray, the worker pool, the API server: try again later
    StorageUnavailableError: 4,  # the store's server does not answer: try again later
    RunInterruptedError: 128,  # plus the signal's number, as a shell reports it
}
"""The one table of exit codes: each class exits with the code of its nearest family
here. 0 is success and :data:`INTERNAL_ERROR` (3) a bug in runner."""


def _family_code(cls: type[RunnerError]) -> int:
    return next(EXIT_CODES[c] for c in cls.__mro__ if c in EXIT_CODES)


def exit_code_of(error: BaseException) -> int:
    """The process exit code for ``error``: its family's (128 + N for a run a signal
    stopped, 130 for Ctrl-C outside a run), else :data:`INTERNAL_ERROR`."""
    if isinstance(error, RunInterruptedError):
        return EXIT_CODES[RunInterruptedError] + error.signum
    if isinstance(error, RunnerError):
        return _family_code(type(error))
    if isinstance(error, KeyboardInterrupt):
        return EXIT_CODES[RunInterruptedError] + int(signal.SIGINT)
    return INTERNAL_ERROR
