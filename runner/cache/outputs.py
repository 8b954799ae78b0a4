"""A cached step's output fields to objects and back.

On a miss, the fields a step wrote are encoded as a checkpoint encodes them
(:mod:`runner.artifacts.codec`: Parquet, JSON, signed pickle, small values inline)
and put as objects; on a hit they are read back from the objects, each checked
against its digest, pickles verified for :func:`~runner.artifacts.objects.object_binding`
before they are unpickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.artifacts.codec import decode, encode, fits_inline
from runner.artifacts.objects import ObjectStore, object_binding
from runner.cache.entries import OutputRef

__all__ = ["restore_outputs", "store_outputs"]


def store_outputs(objects: ObjectStore, values: Mapping[str, Any]) -> dict[str, OutputRef]:
    """Put each field of ``values`` as an object (small values stay inline)."""
    refs = {}
    for name, value in values.items():
        if fits_inline(value):
            refs[name] = OutputRef(format="value", value=value)
            continue
        encoded = encode(value, binding=object_binding(name))
        if encoded.write_file is not None and objects.store.local:
            put = objects.write_object(encoded.write_file)
        else:
            put = objects.put_bytes(encoded.data)
        series_name = encoded.series_name if encoded.format == "series" else None
        refs[name] = OutputRef(format=encoded.format,  # type: ignore[arg-type]
                               object=put.digest, bytes=put.size, rows=encoded.rows,
                               series_name=series_name)
    return refs


def restore_outputs(objects: ObjectStore, outputs: Mapping[str, OutputRef], *,
                    allow_unsigned: bool = False) -> dict[str, Any]:
    """The output fields an entry names, read from their objects and verified."""
    values = {}
    for name, ref in outputs.items():
        if ref.object is None:
            values[name] = ref.value
            continue
        data = objects.get_bytes(ref.object)
        values[name] = decode(ref.format, data, where=objects.url_of(ref.object),
                              binding=object_binding(name), allow_unsigned=allow_unsigned,
                              series_name=ref.series_name)
    return values
