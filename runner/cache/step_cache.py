"""The step cache as the engine will be handed it: key, look up, fill, explain.

The front door builds a :class:`StepCache` on the run's store and hands it to the
engine (which imports nothing of this package, as with the forensics writer). Per
step the engine calls :meth:`StepCache.key` on the context the step receives, then
:meth:`StepCache.lookup`: on a hit, the output fields to set instead of running the
step (``.apply(context)``); on a miss it runs the step and calls :meth:`StepCache.fill`
with the fields the step changed and the lines it added to the audit trail.
``--dry-run`` asks :meth:`StepCache.explain`.

Reading ahead: before the first step, the engine asks for the keys of the steps that
would follow a chain of hits (each key made from the hashes the entries before it
give, no value decoded) and :meth:`StepCache.prefetching` reads their entries and
starts restoring their outputs on two reader threads (reading an object, checking its
hash and decoding Parquet release the GIL), so a fully cached run decodes on both
cores while the steps are recorded. The step's own :meth:`lookup` takes what was read
for its key; a key nobody asks for (the prediction went wrong) is dropped unread.

A hit needs every object its entry names: an entry whose object is gone (swept, or
a store copied without it) is a miss, said once in the log, and the step runs and
fills it again. Anything that does not verify (an edited entry or object) is an
:class:`~runner.errors.IntegrityError`: the store is not trusted to be merely stale.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

from pydantic import BaseModel

from runner.artifacts.objects import DEFAULT_GRACE, ObjectStore
from runner.artifacts.store import ArtifactStore
from runner.cache.entries import CacheEntryDoc, entry_path, list_entries, read_entry, write_entry
from runner.cache.fields import field_digest
from runner.cache.keys import StepKey, explain, step_key
from runner.cache.outputs import CachedOutputs, cached_outputs, store_outputs
from runner.errors import ArtifactError, IntegrityError
from runner.orchestration.plan import Plan
from runner.registry import StageEntry

__all__ = ["StepCache", "cache_for"]

log = logging.getLogger("runner.artifacts")

READERS = 2
"""Threads restoring the outputs of the entries read ahead."""

AHEAD_BYTES = 256 << 20
"""Stored bytes whose restoring starts ahead of their steps, at most (past the first
entry): the steps further on restore their own outputs, so a run of large frames
does not hold many steps' outputs at once before it needs them."""

Ahead = tuple[Mapping[str, str], Collection[str]]
"""What an entry read ahead says of its step: the content hash of each field it sets,
and the fields it appends to."""


class StepCache:
    """The step cache of one artifact store (shared by every run on it)."""

    def __init__(self, store: ArtifactStore, *, runner_version: str,
                 allow_unsigned: bool = False, grace: float = DEFAULT_GRACE,
                 default: bool = True) -> None:
        self.store = store
        self.default = default
        """Whether a stage that does not say (``@stage(cache=None)``) is cached: the
        run's or the pipeline's choice."""
        self.objects = ObjectStore(store, grace=grace)
        self.runner_version = runner_version
        self.allow_unsigned = allow_unsigned
        self._ahead: dict[str, Future[CachedOutputs | None]] = {}

    def __getstate__(self) -> dict[str, Any]:  # travels to workers without what it read
        return {**self.__dict__, "_ahead": {}}

    def __repr__(self) -> str:
        return f"StepCache({self.store.url!r})"

    def key(self, entry: StageEntry, context: BaseModel, *,
            known: Mapping[str, str] | None = None) -> StepKey | None:
        """The step's key; None for a stage this run does not cache: declared
        ``cache=False`` (always run), or undeclared in a run that caches only the stages
        that ask (:attr:`default` False)."""
        if not (entry.cache if entry.cache is not None else self.default):
            return None
        return step_key(entry, context, known=known)

    def lookup(self, step: StepKey) -> CachedOutputs | None:
        """What a cached run of ``step`` wrote (``.apply(context)`` sets it), or None.
        An entry or object that does not verify is an :class:`IntegrityError` that says
        how to go on."""
        try:
            pending = self._ahead.pop(step.key, None)
            if pending is not None:
                return pending.result()
            doc = self._entry(step)
            return self._restore(step, doc) if doc is not None else None
        except IntegrityError as exc:
            stage = step.inputs.stage
            raise IntegrityError(
                f"{exc} (the step cache of {stage}: edited, damaged, or signed with another "
                f"RUNNER_ARTIFACT_KEY; runner cache clear --stage {stage} removes its "
                "entries, --no-cache runs without the cache)", url=exc.url) from exc

    @contextlib.contextmanager
    def prefetching(self) -> Iterator[Callable[[StepKey], Ahead | None]]:
        """``read(step)`` reads ``step``'s entry now and starts restoring its outputs on a
        reader thread, for the :meth:`lookup` of that key to take. It returns what the
        entry sets and appends to, or None: no entry, one that does not read here (its
        step's lookup says why), one without the content hashes a next key needs, or
        one past :data:`AHEAD_BYTES`. The threads end once what was started is done."""
        pool = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="runner-cache-read")
        self._ahead.clear()
        try:
            yield partial(self._read_ahead, pool, [AHEAD_BYTES])
        finally:
            pool.shutdown(wait=False)

    def _read_ahead(self, pool: ThreadPoolExecutor, budget: list[int], step: StepKey,
                    ) -> Ahead | None:
        try:
            doc = self._entry(step)
        except Exception:  # the step's own lookup raises it, at its step
            return None
        if doc is None:
            return None
        size = sum(ref.bytes for ref in doc.outputs.values())
        if self._ahead and size > budget[0]:  # the first: its step is next, it needs it
            return None
        budget[0] -= size
        self._ahead[step.key] = pool.submit(self._restore, step, doc)
        sets = [name for name, ref in doc.outputs.items() if not ref.append]
        digests = {name: ref.digest for name, ref in doc.outputs.items()
                   if not ref.append and ref.digest is not None}
        if len(digests) != len(sets):  # an entry made before hashes were kept
            return None
        return digests, [name for name, ref in doc.outputs.items() if ref.append]

    def _entry(self, step: StepKey) -> CacheEntryDoc | None:
        """The entry kept for ``step``'s key, verified; None when there is none."""
        return read_entry(self.store, step.inputs.stage, step.key,
                          allow_unsigned=self.allow_unsigned)

    def _restore(self, step: StepKey, doc: CacheEntryDoc) -> CachedOutputs | None:
        """The entry's outputs; None when an object it names is gone (the entry is
        removed: the step runs and fills it again)."""
        try:
            return cached_outputs(self.objects, doc.outputs,
                                  allow_unsigned=self.allow_unsigned)
        except ArtifactError as exc:
            if not exc.missing:
                raise
            log.warning("cache entry of %s (%s...) names an object that is gone (%s): "
                        "running the step again", step.inputs.stage, step.key[:12], exc.url)
            # gone, so the fill after the step runs can write it again
            self.store.delete(entry_path(step.inputs.stage, step.key))
            return None

    @staticmethod
    def digests(values: Mapping[str, Any]) -> dict[str, str]:
        """The content hash of each of ``values`` (what a key reads for a field)."""
        return {name: field_digest(value) for name, value in values.items()}

    def fill(self, step: StepKey, outputs: Mapping[str, Any], *,
             appended: Mapping[str, list[Any]] | None = None,
             digests: Mapping[str, str] | None = None) -> bool:
        """Keep what the step wrote: the fields it changed (``outputs``, with their
        content hashes: ``digests``, or computed) and the items it appended to log-like
        fields (``appended``: the audit trail's new lines), as objects, then its entry.
        True when this call wrote the entry (another run may have filled it first)."""
        refs = store_outputs(self.objects, outputs, appended=appended, digests=digests)
        return write_entry(self.store, step, refs, runner_version=self.runner_version)

    def explain(self, step: StepKey) -> list[str]:
        """Why ``step`` would run: against the newest entry of its stage (none: "never run
        with the cache"); ``["cached"]`` when its own entry is there."""
        if self._entry(step) is not None:
            return ["cached"]
        docs = [e.doc for e in list_entries(self.store, stage=step.inputs.stage,
                                            allow_unsigned=self.allow_unsigned)
                if e.doc is not None]
        newest = max(docs, key=lambda d: d.created, default=None)
        return explain(newest.inputs if newest is not None else None, step.inputs)



def cache_for(plan: Plan, store: Callable[[], ArtifactStore], *, cache: bool | None,
              runner_version: str, allow_unsigned: bool = False) -> StepCache | None:
    """The step cache of a run of ``plan``, or None when it caches nothing.

    ``cache`` is the run's choice: True caches every stage, False none (``--no-cache``),
    None follows the pipeline (manifest ``"cache": true``). Whatever the run's choice
    short of False, a stage declared ``@stage(cache=False)`` always runs and one
    declared ``cache=True`` is cached. ``store``: the run's store, made only when needed.
    """
    if cache is False:
        return None
    default = cache is True or plan.cache
    if not default and not any(s.entry.cache for s in plan.stages):
        return None
    return StepCache(store(), runner_version=runner_version, allow_unsigned=allow_unsigned,
                     default=default)
