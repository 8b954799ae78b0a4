"""Every path of the store layout, in one place, and confined to its run.

    runs/<RUN_ID>/run.json                         the run document (signed)
    runs/<RUN_ID>/journal.jsonl                    checkpoints committed since (journal.py)
    runs/<RUN_ID>/lease/<EPOCH>.json               who runs it now (lease.py)
    runs/<RUN_ID>/spans.jsonl                      the run's spans
    runs/<RUN_ID>/spans.sig.json                   their sha256, signed
    runs/<RUN_ID>/results.json                     what a succeeded run came up with
                                                   (results.py; its sha256 in run.json)
    runs/<RUN_ID>/steps/<NNN>-<name>/index.json    a checkpoint's index (signed)
    runs/<RUN_ID>/steps/<NNN>-<name>/<field>.parquet|json|pkl   (runs written before
                                                   objects; fields are objects now:
                                                   objects/<ab>/<62 hex>, objects.py)
    summaries/runs/<RUN_ID>/error_context.pkl      forensics (signed pickle)
    summaries/runs/<RUN_ID>/error.json             what failed (signed)
    runs/<RUN_ID>/attempts/<N>/spans.jsonl         an earlier attempt's spans (and
    runs/<RUN_ID>/attempts/<N>/spans.sig.json        their signed checksum)
    summaries/runs/<RUN_ID>/attempts/<N>/error.json          an earlier attempt's
    summaries/runs/<RUN_ID>/attempts/<N>/error_context.pkl   forensics

The spans and forensics at the top are the latest attempt's; when ``--resume``
starts attempt N+1, attempt N's are moved under ``attempts/<N>/`` (attempts.py).

Run ids, step folders and field files named by a document on the store are
checked here with whole-string patterns before any path is built from them, so
a store cannot point a reader (or ``runs prune``) outside the run's folder. A
field file may live in an earlier step folder of the same run (an unchanged
field is referenced, not rewritten), never in another run's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runner.errors import IntegrityError, UsageError
from runner.workspace import check_run_id

__all__ = [
    "ATTEMPTS",
    "ERROR_CONTEXT_FILE",
    "ERROR_INFO_FILE",
    "INDEX_FILE",
    "JOURNAL_FILE",
    "LEASE_DIR",
    "RESULTS_FILE",
    "RUNS",
    "RUN_FILE",
    "SPANS_FILE",
    "SPANS_SIGNATURE_FILE",
    "RunPaths",
    "is_run_id",
    "run_paths",
]

RUNS = "runs"
SUMMARIES = "summaries/runs"
RUN_FILE = "run.json"
JOURNAL_FILE = "journal.jsonl"
LEASE_DIR = "lease"
SPANS_FILE = "spans.jsonl"
SPANS_SIGNATURE_FILE = "spans.sig.json"
RESULTS_FILE = "results.json"
INDEX_FILE = "index.json"
ERROR_CONTEXT_FILE = "error_context.pkl"
ERROR_INFO_FILE = "error.json"
ATTEMPTS = "attempts"
MAX_ATTEMPT = 999_999

_STEP_DIR = re.compile(r"steps/[0-9]{3,9}-[A-Za-z0-9_.-]{1,60}")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}")
_SUFFIXES = ("parquet", "json", "pkl")
_MEMBER = re.compile(rf"({_STEP_DIR.pattern})/({_FIELD.pattern})\.(parquet|json|pkl)")


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
    return re.sub(r"\.{2,}", ".", slug).strip("-.")[:60] or "step"


def is_run_id(name: str) -> bool:
    """True when ``name`` is a valid run id (a folder listed under ``runs/`` may not be)."""
    try:
        check_run_id(name)
    except UsageError:
        return False
    return True


@dataclass(frozen=True)
class RunPaths:
    """The store-relative paths of one run; built only from a valid run id."""

    run_id: str

    def __post_init__(self) -> None:
        check_run_id(self.run_id)

    @property
    def dir(self) -> str:
        return f"{RUNS}/{self.run_id}"

    @property
    def run_file(self) -> str:
        return f"{self.dir}/{RUN_FILE}"

    @property
    def journal_file(self) -> str:
        return f"{self.dir}/{JOURNAL_FILE}"

    @property
    def lease_dir(self) -> str:
        return f"{self.dir}/{LEASE_DIR}"

    @property
    def spans_file(self) -> str:
        return f"{self.dir}/{SPANS_FILE}"

    @property
    def spans_signature_file(self) -> str:
        return f"{self.dir}/{SPANS_SIGNATURE_FILE}"

    @property
    def results_file(self) -> str:
        return f"{self.dir}/{RESULTS_FILE}"

    @property
    def forensics_dir(self) -> str:
        return f"{SUMMARIES}/{self.run_id}"

    @property
    def error_context_file(self) -> str:
        return f"{self.forensics_dir}/{ERROR_CONTEXT_FILE}"

    @property
    def error_info_file(self) -> str:
        return f"{self.forensics_dir}/{ERROR_INFO_FILE}"

    # ------------------------------------------------------------ earlier attempts

    @staticmethod
    def check_attempt(attempt: int) -> int:
        if isinstance(attempt, bool) or not isinstance(attempt, int) \
                or not 1 <= attempt <= MAX_ATTEMPT:
            raise IntegrityError(f"{str(attempt)[:20]!r} is not an attempt number "
                                 f"(1 to {MAX_ATTEMPT})")
        return attempt

    @property
    def attempts_dir(self) -> str:
        return f"{self.dir}/{ATTEMPTS}"

    @property
    def attempts_forensics_dir(self) -> str:
        return f"{self.forensics_dir}/{ATTEMPTS}"

    def attempt_spans_file(self, attempt: int) -> str:
        return f"{self.attempts_dir}/{self.check_attempt(attempt)}/{SPANS_FILE}"

    def attempt_spans_signature_file(self, attempt: int) -> str:
        return f"{self.attempts_dir}/{self.check_attempt(attempt)}/{SPANS_SIGNATURE_FILE}"

    def attempt_error_info_file(self, attempt: int) -> str:
        return f"{self.attempts_forensics_dir}/{self.check_attempt(attempt)}/{ERROR_INFO_FILE}"

    def attempt_error_context_file(self, attempt: int) -> str:
        return (f"{self.attempts_forensics_dir}/{self.check_attempt(attempt)}/"
                f"{ERROR_CONTEXT_FILE}")

    # ------------------------------------------------------------ checkpoints

    @staticmethod
    def new_step_dir(seq: int, name: str) -> str:
        """The folder (relative to the run) of the ``seq``-th checkpoint, after ``name``."""
        return f"steps/{seq:03d}-{_slug(name)}"

    @staticmethod
    def new_field_file(step_dir: str, field: str, suffix: str) -> str:
        """Where (relative to the run) a field's file goes in ``step_dir``."""
        if not _FIELD.fullmatch(field) or suffix not in _SUFFIXES:
            raise IntegrityError(f"cannot store field {field!r} as .{suffix}")
        return f"{step_dir}/{field}.{suffix}"

    def step_dir(self, step_dir: str) -> str:
        """``step_dir`` (``steps/NNN-name``, from a document) checked; IntegrityError if not."""
        if not isinstance(step_dir, str) or not _STEP_DIR.fullmatch(step_dir) \
                or ".." in step_dir:
            raise IntegrityError(f"run {self.run_id!r}: {str(step_dir)[:80]!r} is not a "
                                 "checkpoint folder (steps/NNN-name)", url=self.dir)
        return step_dir

    def index_file(self, step_dir: str) -> str:
        return f"{self.dir}/{self.step_dir(step_dir)}/{INDEX_FILE}"

    def member(self, rel: str) -> str:
        """A field file named by an index (relative to the run), as a store path.

        It must be ``steps/NNN-name/<field>.<parquet|json|pkl>`` of this run:
        no ``..``, no absolute path, no other run.
        """
        if not isinstance(rel, str) or not _MEMBER.fullmatch(rel) or ".." in rel:
            raise IntegrityError(f"run {self.run_id!r}: {str(rel)[:80]!r} is not a field "
                                 "file of this run (steps/NNN-name/FIELD.parquet|json|pkl)",
                                 url=self.dir)
        return f"{self.dir}/{rel}"


def run_paths(run_id: str) -> RunPaths:
    """The paths of run ``run_id``; :class:`UsageError` (exit 2) for an invalid id."""
    return RunPaths(run_id)
