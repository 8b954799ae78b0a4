"""Run state on any fsspec storage: checkpoints, resume, forensics, run listing."""

from runner.artifacts.checkpoint import CheckpointHook, load_checkpoint, read_index, read_run
from runner.artifacts.codec import KEY_ENV
from runner.artifacts.lease import LEASE_ENV, RunLease
from runner.artifacts.runs import (
    StoreForensics,
    list_runs,
    load_error_context,
    prepare_resume,
    prune_runs,
)
from runner.artifacts.store import ArtifactStore, storage_options_from

__all__ = [
    "KEY_ENV",
    "LEASE_ENV",
    "ArtifactStore",
    "CheckpointHook",
    "RunLease",
    "StoreForensics",
    "list_runs",
    "load_checkpoint",
    "load_error_context",
    "prepare_resume",
    "prune_runs",
    "read_index",
    "read_run",
    "storage_options_from",
]
