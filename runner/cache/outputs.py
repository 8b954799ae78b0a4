"""A cached step's output fields to objects and back.

On a miss, the fields a step wrote are encoded as a checkpoint encodes them
(:mod:`runner.artifacts.codec`: Parquet, JSON, signed pickle, small values inline)
and put as objects, each with the content hash a later step's key reads for it; on a
hit they are read back from the objects, each checked against its digest, pickles
verified for :func:`~runner.artifacts.objects.object_binding` before they are
unpickled, and handed over with those content hashes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.artifacts.codec import decode, encode, fits_inline
from runner.artifacts.objects import ObjectStore, object_binding
from runner.cache.entries import OutputRef
from runner.cache.fields import field_digest
from runner.errors import IntegrityError
from runner.orchestration.memo import written_fields

__all__ = ["CachedOutputs", "cached_outputs", "restore_outputs", "store_outputs", "written_fields"]


@dataclass(frozen=True)
class CachedOutputs:
    """What a hit gives the step loop: fields to set and items to append."""

    values: dict[str, Any] = field(default_factory=dict)
    appended: dict[str, list[Any]] = field(default_factory=dict)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each field of ``values`` read from an object, as a checkpoint names that object."""
    digests: dict[str, str] = field(default_factory=dict)
    """The content hash of each field of ``values`` the entry kept one for."""

    @property
    def changed(self) -> set[str]:
        """Every field :meth:`apply` sets or appends to."""
        return set(self.values) | set(self.appended)

    def apply(self, context: Any) -> Any:
        """``context`` as the step would have returned it (changed in place)."""
        for name, value in self.values.items():
            setattr(context, name, value)
        for name, items in self.appended.items():
            getattr(context, name).extend(items)
        return context


def store_outputs(objects: ObjectStore, values: Mapping[str, Any], *,
                  appended: Mapping[str, list[Any]] | None = None,
                  digests: Mapping[str, str] | None = None) -> dict[str, OutputRef]:
    """Put each field of ``values`` as an object (small values stay inline) with its
    content hash from ``digests`` (computed when not given), and the items appended to
    each field of ``appended`` (marked to be appended on a hit)."""
    refs = {name: _ref(objects, name, items).model_copy(update={"append": True})
            for name, items in (appended or {}).items()}
    digests = digests or {}
    for name, value in values.items():
        if name in refs:
            raise ValueError(f"field {name!r} is both set and appended to")
        digest = digests[name] if name in digests else field_digest(value)
        refs[name] = _ref(objects, name, value).model_copy(update={"digest": digest})
    return refs


def _ref(objects: ObjectStore, name: str, value: Any) -> OutputRef:
    """One field as an inline value, or as an object in its checkpoint format."""
    if fits_inline(value):
        return OutputRef(format="value", value=value)
    encoded = encode(value, binding=object_binding(name))
    if encoded.write_file is not None and objects.store.local:
        put = objects.write_object(encoded.write_file)
    else:
        put = objects.put_bytes(encoded.data)
    series_name = encoded.series_name if encoded.format == "series" else None
    return OutputRef(format=encoded.format,  # type: ignore[arg-type]
                     object=put.digest, bytes=put.size, rows=encoded.rows,
                     series_name=series_name)


def restore_outputs(objects: ObjectStore, outputs: Mapping[str, OutputRef], *,
                    allow_unsigned: bool = False) -> dict[str, Any]:
    """The output fields an entry names, read from their objects and verified."""
    values = {}
    for name, ref in outputs.items():
        if ref.object is None:
            values[name] = ref.value
            continue
        data = objects.get_bytes(ref.object, size=ref.bytes)
        values[name] = decode(ref.format, data, where=objects.url_of(ref.object),
                              binding=object_binding(name), allow_unsigned=allow_unsigned,
                              series_name=ref.series_name)
    return values


def cached_outputs(objects: ObjectStore, outputs: Mapping[str, OutputRef], *,
                   allow_unsigned: bool = False) -> CachedOutputs:
    """:func:`restore_outputs`, split into fields to set and items to append."""
    values = restore_outputs(objects, outputs, allow_unsigned=allow_unsigned)
    appended = {n: values.pop(n) for n, ref in outputs.items() if ref.append}
    bad = [n for n, items in appended.items() if not isinstance(items, list)]
    if bad:
        raise IntegrityError(f"cache entry: appended field {bad[0]!r} is not a list",
                             url=bad[0])
    named = {name: _checkpoint_entry(ref) for name, ref in outputs.items()
             if ref.object is not None and not ref.append}
    digests = {name: ref.digest for name, ref in outputs.items()
               if ref.digest is not None and not ref.append}
    return CachedOutputs(values=values, appended=appended, objects=named, digests=digests)


def _checkpoint_entry(ref: OutputRef) -> dict[str, Any]:
    """The object of ``ref`` as a checkpoint's index names it: what the checkpoint writer
    would write for the field (the same encoding, so the same object)."""
    entry: dict[str, Any] = {"format": ref.format, "rows": ref.rows}
    if ref.format == "series":
        entry["series_name"] = ref.series_name
    entry.update(object=ref.object, bytes=ref.bytes)
    return entry
