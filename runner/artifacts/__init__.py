"""Run state on any fsspec storage: checkpoints, resume, forensics, run listing.

The store is untrusted data: run.json, index.json, error.json and pickles are
signed (:mod:`runner.artifacts.signing`), every path is confined to its run
(:mod:`runner.artifacts.layout`) and every document is typed
(:mod:`runner.artifacts.documents`). One module a job: the checkpoint hook
(``checkpoint``) and its writer threads (``checkpoint_write``), reading a run back
(``reading``), the lease (``lease``), forensics (``forensics``), resume (``resume``),
listing (``listing``), pruning (``pruning``).
"""

from runner.artifacts.checkpoint import CheckpointHook
from runner.artifacts.documents import IndexDoc, RunDoc
from runner.artifacts.forensics import StoreForensics, load_error_context
from runner.artifacts.layout import RunPaths, run_paths
from runner.artifacts.lease import LEASE_ENV, RunLease
from runner.artifacts.listing import RunListing, list_runs
from runner.artifacts.options import storage_options
from runner.artifacts.pruning import prune_runs, sweep_store
from runner.artifacts.reading import load_checkpoint, load_field, read_index, read_run
from runner.artifacts.resume import prepare_resume
from runner.artifacts.signing import KEY_ENV, KEY_FILE_ENV, load_key
from runner.artifacts.store import ArtifactStore

__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "LEASE_ENV",
    "ArtifactStore",
    "CheckpointHook",
    "IndexDoc",
    "RunDoc",
    "RunLease",
    "RunListing",
    "RunPaths",
    "StoreForensics",
    "list_runs",
    "load_checkpoint",
    "load_error_context",
    "load_field",
    "load_key",
    "prepare_resume",
    "prune_runs",
    "read_index",
    "read_run",
    "run_paths",
    "storage_options",
    "sweep_store",
]
