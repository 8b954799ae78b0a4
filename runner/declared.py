"""What a stage declares besides its function: its reads and its code version.

Reads are context fields, and run parameters one by one:

``@stage(reads=["prices", "params.signal_clip"])`` says the stage reads the field
``prices`` and, of the run's parameters (the context's ``params`` dict), only
``signal_clip``. The step cache then keys the stage on that parameter's value alone (a
run with another ``tilt`` finds it cached), and the engine holds the stage to it
where it runs (:mod:`runner.orchestration.params`). Declaring ``params`` whole, or no
reads, reads every parameter. Only ``params`` takes a key: the run's parameters are
the one field every run starts with and every stage may read a part of.
"""

from __future__ import annotations

from collections.abc import Iterable

from runner.errors import RegistryError

__all__ = ["PARAMS", "PARAM_PREFIX", "checked_reads", "checked_version", "field_of", "param_name",
           "split_reads"]

PARAMS = "params"
"""The context field that holds the run's parameters."""
PARAM_PREFIX = PARAMS + "."


def field_of(read: str) -> str:
    """The context field a declared read is of: ``params.tilt`` -> ``params``."""
    return PARAMS if read.startswith(PARAM_PREFIX) else read


def param_name(read: str) -> str | None:
    """The parameter a declared read names (``params.tilt`` -> ``tilt``), or None."""
    return read[len(PARAM_PREFIX):] if read.startswith(PARAM_PREFIX) else None


def split_reads(stage: str, reads: Iterable[str],
                ) -> tuple[frozenset[str], frozenset[str] | None]:
    """The fields ``stage`` reads, and the parameters it reads one by one (None: every
    one, or it declares none by name: ``params`` whole wins over ``params.NAME``).
    A read that is not a field name or ``params.NAME`` is a :class:`RegistryError`."""
    reads = tuple(reads)
    fields: set[str] = set()
    params: set[str] = set()
    for read in reads:
        if not isinstance(read, str) or not read:
            raise RegistryError(f"stage {stage!r}: reads holds {read!r}, not a field name")
        name = param_name(read)
        if name is not None and not name:
            raise RegistryError(f"stage {stage!r}: reads {read!r} names no parameter "
                                "(params.NAME)")
        if name is None and "." in read:
            raise RegistryError(
                f"stage {stage!r}: reads {read!r}: only {PARAMS} takes a key ({PARAMS}.NAME, "
                f"one run parameter); name the field {read.split('.', 1)[0]!r} whole")
        fields.add(field_of(read))
        if name is not None:
            params.add(name)
    return frozenset(fields), (frozenset(params) if params and PARAMS not in reads else None)


def checked_reads(stage: str, reads: Iterable[str]) -> frozenset[str]:
    """``reads`` as declared, refused where declared when one is malformed."""
    declared = frozenset(reads)
    split_reads(stage, declared)
    return declared


def checked_version(stage: str, version: str | None, cache: bool | None) -> str | None:
    """An explicit code version is a short non-empty string (it goes into cache keys);
    ``cache`` is True, False or None."""
    if cache is not None and not isinstance(cache, bool):
        raise RegistryError(f"stage {stage!r}: cache must be True, False or None, not {cache!r}")
    if version is not None and not (isinstance(version, str) and 0 < len(version) <= 200):
        raise RegistryError(f"stage {stage!r}: version must be a non-empty string of at most "
                            f"200 characters, not {version!r}")
    return version
