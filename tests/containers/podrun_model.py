"""What a pod's translation makes (:class:`ContainerRun`, the files it stages),
the error it refuses with, and the Kubernetes value rules it shares: the kubelet's
``$(VAR)`` expansion, quantities, Secret data. See ``tests.containers.podrun``."""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

DEFAULT_GRACE = 30
CONFIG_MODE = 0o644  # the API server's defaultMode of ConfigMap and Secret volumes


class PodRunError(ValueError):
    """A pod podrun cannot run as the kubelet would: the message names the field."""


@dataclass(frozen=True)
class StagedPath:
    """A file (``data``) or folder (``data`` None) to write under the staging folder."""

    path: str
    data: bytes | None
    mode: int
    gid: int | None = None


@dataclass(frozen=True)
class ContainerRun:
    """What :func:`translate` makes of a pod: run it with :meth:`argv` and
    :meth:`client_env` after :func:`stage`."""

    name: str
    image: str
    options: tuple[str, ...]
    command: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)
    """The container's variables; ``options`` holds only ``--env NAME``."""
    staged: tuple[StagedPath, ...] = field(repr=False)
    stop_timeout: int = DEFAULT_GRACE

    def argv(self, docker: str = "docker", *, detach: bool = False) -> list[str]:
        return [docker, "run", *(["--detach"] if detach else []), *self.options,
                self.image, *self.command]

    def client_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """The docker client's environment: ``base`` (PATH, DOCKER_HOST, ...) and the
        container's variables, which ``--env NAME`` takes from it."""
        return {**base, **self.env}


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion (Kubernetes' third_party/forked/golang/expansion),
    byte for byte: ``$(NAME)`` -> its value, or kept as it is when unknown; ``$$`` -> ``$``;
    a ``$`` before any other byte is kept with it -- and, as in Go's ``string(byte)``, a
    non-ASCII byte after ``$`` is re-encoded as the code point of that byte."""
    data = text.encode("utf-8", "surrogateescape")
    out = bytearray()
    checkpoint = cursor = 0
    while cursor < len(data):
        if data[cursor] == 0x24 and cursor + 1 < len(data):  # "$"
            out += data[checkpoint:cursor]
            rest = data[cursor + 1:]
            if rest[0] == 0x24:
                out += b"$"
                advance = 1
            elif rest[0] == 0x28:  # "("
                close = rest.find(b")", 1)
                if close < 0:
                    out += b"$("
                    advance = 1
                else:
                    name = rest[1:close].decode("utf-8", "surrogateescape")
                    value = env.get(name)
                    out += (f"$({name})" if value is None else value).encode(
                        "utf-8", "surrogateescape")
                    advance = close + 1
            else:
                out += b"$" + chr(rest[0]).encode("utf-8")
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out += data[checkpoint:]
    return out.decode("utf-8", "surrogateescape")


def stage(run: ContainerRun, folder: Path) -> None:
    """Write ``run``'s files and folders under ``folder`` (group fsGroup when allowed)."""
    for item in run.staged:
        path = folder / item.path
        if item.data is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(item.data)
        if item.gid is not None and os.geteuid() == 0:
            os.chown(path, -1, item.gid)
        path.chmod(item.mode)


def cpu_of(quantity: Any) -> Decimal:
    """A Kubernetes quantity ("500m", "2Gi", "1e3") as a number."""
    from kubernetes.utils import parse_quantity

    try:
        return Decimal(parse_quantity(str(quantity)))
    except ValueError as exc:
        raise PodRunError(f"bad quantity {quantity!r}: {exc}") from None


def bytes_of(quantity: Any) -> int:
    return math.ceil(cpu_of(quantity))


def decode_secret(obj: Mapping[str, Any]) -> dict[str, str]:
    """A Secret's values: ``data`` decoded, ``stringData`` as posted."""
    return {**{k: base64.b64decode(v).decode("utf-8", "surrogateescape")
               for k, v in (obj.get("data") or {}).items()},
            **(obj.get("stringData") or {})}


def refuse_unknown(section: Mapping[str, Any], known: set[str], where: str) -> None:
    """Refuse every set field (not false, empty or null) that is not in ``known``."""
    for key, value in section.items():
        if key not in known and value not in (None, False, [], {}, ""):
            raise PodRunError(f"{where}.{key}: not supported by podrun ({value!r:.60})")
