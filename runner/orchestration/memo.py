"""The engine's side of the step cache: what it is handed, and what it hands back.

The front door builds the cache on the run's store (:class:`runner.cache.StepCache`)
and hands it to :class:`~runner.orchestration.runner.DAGRunner`, as it hands the
forensics writer: the engine never imports :mod:`runner.cache`. Per stage step the
step loop asks :meth:`StepMemo.key` (None: the stage is not cached in this run), then
:meth:`StepMemo.lookup`: a hit's ``apply(context)`` sets what the stage would have
written, the stage is not called; a miss runs it and :meth:`StepMemo.fill` keeps
what it wrote (:func:`step_outputs`). Adapters and merges are never cached: they are
recomputed from their (cached) inputs.

:class:`FieldDigests` keeps the content hashes a loop knows already (a hit's entry
has the hash of each field it restores; a key or a fill hashed the others), so a
field is hashed once while it holds the same object, and a fully cached run hashes
only what it started with. :func:`walk_cached` is how a parallel group's branch
completes on the driver when every step of it is a hit, so a fully cached group
starts no worker. :func:`look_ahead` starts reading the outputs of the hits the run's
first steps will be, before they run (a memo that reads ahead: ``prefetching``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from runner.context import Snapshot, fork_context
from runner.declared import PARAMS, param_name
from runner.orchestration.plan import PipelineStep, StageStep

if TYPE_CHECKING:
    from runner.orchestration.plan import Step
    from runner.registry import StageEntry

__all__ = ["TRAIL", "Before", "FieldDigests", "Hit", "Keyed", "StepMemo", "apply_hit", "fill",
           "look_ahead", "step_key", "step_outputs", "walk_cached", "written_fields"]

log = logging.getLogger("runner")

TRAIL = "audit_trail"
"""The log-like field whose new lines a step's cache entry keeps, appended on a hit."""


class Keyed(Protocol):
    """A step's cache key (``key``: 64 hex digits), as :meth:`StepMemo.key` makes it, and
    the content hash of each field it read (``digests``)."""

    @property
    def key(self) -> str: ...

    @property
    def digests(self) -> Mapping[str, str]: ...


class Hit(Protocol):
    """What a hit gives the step loop: the step's outputs, set on a context, and for
    each field set from a stored object, that object as a checkpoint names it
    (``format``, ``object``, ``rows``, ``bytes``, ``series_name``): the step's
    checkpoint names those objects rather than encoding the fields again."""

    @property
    def objects(self) -> Mapping[str, Mapping[str, Any]]: ...

    @property
    def digests(self) -> Mapping[str, str]:
        """The content hash of each field it sets, as the step that filled it hashed it
        (fields of an entry made before hashes were kept: none)."""

    @property
    def changed(self) -> Collection[str]:
        """Every field :meth:`apply` sets or appends to."""

    def apply(self, context: Any) -> Any: ...


class StepMemo(Protocol):
    """The step cache as the engine is handed it. Pickles: it travels with branches to
    worker processes and Ray."""

    def key(self, entry: StageEntry, context: BaseModel, *,
            known: Mapping[str, str] | None = None) -> Keyed | None:
        """The step's key; None when this run does not cache the stage. ``known``:
        content hashes of fields the caller has already, taken as given."""

    def lookup(self, step: Any) -> Hit | None:
        """What a cached run of ``step`` (a :meth:`key`) wrote, or None."""

    def digests(self, values: Mapping[str, Any]) -> dict[str, str]:
        """The content hash of each of ``values``, as a key hashes a field."""

    def fill(self, step: Any, outputs: Mapping[str, Any], *,
             appended: Mapping[str, list[Any]] | None = None,
             digests: Mapping[str, str] | None = None) -> bool:
        """Keep what the step wrote (with the ``digests`` of ``outputs``); True when
        this call wrote the entry."""

    # Optional: ``prefetching()``, a context manager giving ``read(key)``, which starts
    # reading that key's entry and outputs for its lookup and returns (the content hash
    # of each field the entry sets, the fields it appends to), or None
    # (:meth:`runner.cache.StepCache.prefetching`; see :func:`look_ahead`).


class FieldDigests:
    """The content hashes a step loop knows for its context's fields, so that a key
    does not hash a field again: those a hit restored (its entry's, as the step that
    filled it hashed the value it wrote), those an earlier key hashed, those a fill
    hashed. Each is kept with the object it describes: a field that holds another
    object is hashed again. A step that runs may change any field in place, so the
    loop forgets them all then (:meth:`forget`); only code runs there, never a hit."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[str, tuple[Any, str]] = {}

    def known(self, context: Any) -> dict[str, str]:
        """The hashes of ``context``'s fields that still hold the object hashed."""
        values = getattr(context, "__dict__", {})
        return {name: digest for name, (value, digest) in self._known.items()
                if name in values and values[name] is value}

    def learn(self, context: Any, digests: Mapping[str, str]) -> None:
        """``digests`` describe ``context``'s fields as they hold now."""
        values = context.__dict__
        for name, digest in digests.items():
            if name in values:
                self._known[name] = (values[name], digest)

    def forget(self, names: Collection[str] | None = None) -> None:
        """Forget ``names`` (None: every field)."""
        if names is None:
            self._known.clear()
        else:
            for name in names:
                self._known.pop(name, None)


def written_fields(held: Mapping[str, Any], before: Snapshot, context: Any, *,
                   skip: Container[str] = (TRAIL,)) -> list[str]:
    """The fields a step wrote, to keep as its outputs: those whose value changed, and
    those given a new object even of an equal value. ``held`` is the context's fields
    as they were before the step (the objects themselves, ``dict(context.__dict__)``),
    ``before`` its snapshot. A write of an equal value is still the step's output: on a
    hit it must be restored whatever the field holds then (an earlier step may have
    changed it since the entry was filled)."""
    now = context.__dict__
    changed = set(before.changed(context, now))
    return [name for name in now if name not in skip
            and (name in changed or name not in held or now[name] is not held[name])]


@dataclass(frozen=True)
class Before:
    """A context as a keyed step received it: what :func:`step_outputs` compares with."""

    held: dict[str, Any]
    snapshot: Snapshot
    trail: int | None
    """How many lines the audit trail had (None: the context has no list there)."""

    @classmethod
    def of(cls, context: Any, snapshot: Snapshot | None) -> Before:
        trail = context.__dict__.get(TRAIL)
        return cls(dict(context.__dict__), snapshot or Snapshot(context),
                   len(trail) if isinstance(trail, list) else None)


def step_outputs(before: Before, out: Any) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """What a step wrote: the fields it set, and the lines it appended to the audit
    trail (a trail whose earlier lines it rewrote is kept whole, as a field it set)."""
    now = out.__dict__
    values = {name: now[name] for name in written_fields(before.held, before.snapshot, out)}
    appended: dict[str, list[Any]] = {}
    trail = now.get(TRAIL)
    if before.trail is not None and isinstance(trail, list):
        if before.snapshot.changed(out, [TRAIL], appended={TRAIL}):
            values[TRAIL] = trail
        elif len(trail) > before.trail:
            appended[TRAIL] = trail[before.trail:]
    elif TRAIL in now and now.get(TRAIL) is not before.held.get(TRAIL):
        values[TRAIL] = trail
    return values, appended


def step_key(memo: StepMemo, step: StageStep, context: Any,
             digests: FieldDigests) -> Keyed | None:
    """The key of ``step`` on ``context`` (the fields ``digests`` knows not hashed again,
    the others learned), or None (not cached here, or a context whose fields cannot be
    hashed: said once in the log, and the step simply runs)."""
    if not isinstance(context, BaseModel):
        return None
    try:
        key = memo.key(step.entry, context, known=digests.known(context))
    except Exception as exc:
        log.warning("step cache: no key for %s (%s: %s): it runs uncached", step.path,
                    type(exc).__name__, exc)
        return None
    if key is not None:
        digests.learn(context, key.digests)
    return key


def apply_hit(hit: Hit, context: Any, digests: FieldDigests) -> Any:
    """``context`` with the hit's outputs set, their content hashes learned."""
    out = hit.apply(context)
    digests.forget(hit.changed)
    digests.learn(out, hit.digests)
    return out


def fill(memo: StepMemo, step: StageStep, key: Keyed, before: Before, out: Any,
         ) -> Mapping[str, str]:
    """Keep what ``step`` wrote under ``key``; a fill that fails is a warning (the step
    ran, the run goes on: the next run runs it again). Returns the content hashes of
    the fields it wrote (empty when they could not be made)."""
    digests: Mapping[str, str] = {}
    try:
        values, appended = step_outputs(before, out)
        if PARAMS in values and any(param_name(name) for name in key.digests):
            log.warning("step cache: %s at %s is not kept: it changed params, of which its "
                        "key holds only those it names (declare reads 'params' to cache it)",
                        step.name, step.path)
            return digests
        digests = memo.digests(values)
        memo.fill(key, values, appended=appended, digests=digests)
    except Exception as exc:
        log.warning("step cache: could not keep the outputs of %s (%s: %s)", step.path,
                    type(exc).__name__, exc)
    return digests


def walk_cached(steps: Sequence[Step], context: Any, memo: StepMemo,
                ) -> dict[str, tuple[Keyed, Hit]] | None:
    """Each stage step's key and hit, walking ``steps`` on a fork of ``context`` from
    the cache alone; None when a step is not a hit (a miss, a stage not cached, an
    adapter, a nested group): the branch must run somewhere."""
    found: dict[str, tuple[Keyed, Hit]] = {}
    ctx = fork_context(context)
    digests = FieldDigests()
    for step in _flat(steps, ()):
        if not isinstance(step, StageStep):
            return None
        key = step_key(memo, step, ctx, digests)
        try:
            hit = memo.lookup(key) if key is not None else None
        except Exception:  # the branch's own step reports it, where it runs
            return None
        if key is None or hit is None:
            return None
        ctx = apply_hit(hit, ctx, digests)
        found[step.path] = (key, hit)
    return found


def look_ahead(memo: StepMemo, steps: Sequence[Step], context: Any, digests: FieldDigests,
               *, skip: Container[str] = ()) -> None:
    """Start reading the outputs of the hits ``steps`` will begin with, before they run.

    Walks the stage steps from the first (a nested pipeline's in order; ``skip``: paths
    a resumed run has done) while each would be a hit: its key made as the loop will
    make it, from the hashes known (the context's fields, hashed now where not known
    yet and learned in ``digests``, then those each entry before it says it sets), and
    its entry handed to the memo's reader. It stops at anything else: an adapter, a
    group, a stage not cached, a miss, a key that would read a field an entry appends
    to. Nothing is set on ``context``: the loop's own keys and lookups decide, and take
    what was read for them.
    """
    prefetching = getattr(memo, "prefetching", None)
    if prefetching is None or not isinstance(context, BaseModel):
        return
    known = digests.known(context)
    appended: set[str] = set()
    with prefetching() as read:
        for step in _flat(steps, skip):
            if not isinstance(step, StageStep) or not _read_one(
                    memo, read, step, context, digests, known, appended):
                return


def _flat(steps: Sequence[Step], skip: Container[str]) -> Iterator[Step]:
    """``steps`` in the order they run, a nested pipeline's own steps in its place (and
    none of the paths in ``skip``)."""
    for step in steps:
        if step.path in skip:
            continue
        if isinstance(step, PipelineStep):
            yield from _flat(step.steps, skip)
        else:
            yield step


def _read_one(memo: StepMemo, read: Callable[[Keyed], Any], step: StageStep, context: Any,
              digests: FieldDigests, known: dict[str, str], appended: set[str]) -> bool:
    """Key ``step`` on what is known and read its entry ahead; whether the walk goes on."""
    try:
        key = memo.key(step.entry, context, known=known)
    except Exception:  # the loop's own key says it, at its step
        return False
    if key is None:
        return False
    fresh = {name: d for name, d in key.digests.items() if name not in known}
    if fresh.keys() & appended:  # hashed as it is now, not as the hits before leave it
        return False
    digests.learn(context, fresh)  # the context's own values: the loop hashes them once
    known.update(fresh)
    ahead = read(key)
    if ahead is None:
        return False
    sets, appends = ahead
    if PARAMS in sets:  # the run parameters a later key names are not known here
        return False
    known.update(sets)
    appended.update(appends)
    for name in appends:
        known.pop(name, None)
    return True
