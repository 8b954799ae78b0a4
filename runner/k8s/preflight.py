"""What ``runner submit`` and ``runner schedule`` check before a run leaves the laptop.

Two ways a run on the cluster fails quietly, caught here while the user can still act:

* **The store is inside the pod** (:func:`check_artifact_store`): a local path,
  ``file://``, ``memory://`` or no ``--artifacts`` at all (the image's default root) is
  lost with the pod, and a retried pod cannot resume from it. Refused (exit 2) unless a
  PersistentVolumeClaim is mounted at it or the user accepts the loss.
* **A stage module the image will not have** (:func:`loose_modules`): the manifest names
  ``module:attr`` paths that import here from a loose file or folder (``my_stages.py``
  beside the manifest), not from an installed distribution, so an image that installs
  packages cannot hold them. Warned about, one line per module, with the fix.
* **A parallel run on the image without Ray** (:func:`ray_image_warning`): the default
  image (``VARIANT=job``) has no Ray, so the pods of ``--parallel`` (the Job's and the
  RayCluster's) fail to start Ray. Warned about, with the fix: the Ray variant, tagged
  ``...-ray``, as ``--image``.

    check_artifact_store("s3://quant/runner", claim=None, ephemeral=False)   # fine
    for found in loose_modules(manifest):
        print(found.warning())
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runner.errors import UsageError
from runner.k8s.builders import ARTIFACTS_MOUNT
from runner.k8s.checks import check_dns_subdomain
from runner.manifest import BUILTIN_RULES, Manifest
from runner.manifest_json import format_path

__all__ = ["README_SECTION", "LooseModule", "check_artifact_store", "loose_modules",
           "pod_local", "ray_image_warning"]

README_SECTION = 'README: "Your own stages on the cluster"'
"""Where the fix for a loose stage module is explained."""

_LOCAL_SCHEMES = ("file", "local")
_SHOWN_PLACES = 3


def pod_local(url: str | None) -> str | None:
    """Why an artifact root given to a run's pod stays inside the pod, in words; None
    when it is a store outside the pod (``s3://``, ``gs://``, any other filesystem)."""
    if not url:
        return "no --artifacts: the run would write to the image's default root inside the pod"
    last = url.rsplit("::", 1)[-1]  # a chained URL (simplecache::s3://...) stores last
    scheme, sep, _ = last.partition("://")
    if not sep:
        return f"--artifacts {url} is a path inside the pod"
    if scheme.lower() == "memory":
        return f"--artifacts {url} is the memory of the pod's process"
    if scheme.lower() in _LOCAL_SCHEMES:
        return f"--artifacts {url} is a path inside the pod"
    return None


def _local_path(url: str) -> str | None:
    """The filesystem path of a local artifact root (a path or ``file://``), else None."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    return rest if scheme.lower() in _LOCAL_SCHEMES else None


def check_artifact_store(url: str | None, *, claim: str | None, ephemeral: bool) -> None:
    """Refuse (:class:`UsageError`, exit 2) a run whose checkpoints would be lost with its
    pod: ``url`` must be a store outside the pod, or on the PersistentVolumeClaim
    ``claim`` (mounted at :data:`ARTIFACTS_MOUNT`), unless ``ephemeral`` accepts it."""
    if claim is not None:
        check_dns_subdomain(claim, what="--artifacts-pvc")
        if url is None:
            return
        path = _local_path(url)
        if path is not None and (path.rstrip("/") == ARTIFACTS_MOUNT
                                 or path.startswith(ARTIFACTS_MOUNT + "/")):
            return
        raise UsageError(f"--artifacts {url} is not on the claim that --artifacts-pvc "
                         f"mounts at {ARTIFACTS_MOUNT}: leave --artifacts out (the root is "
                         "then the claim) or name a folder inside it")
    reason = pod_local(url)
    if reason is None or ephemeral:
        return
    raise UsageError(f"{reason}, so its checkpoints are lost with the pod and a retried pod "
                     "could not resume the run; give a store outside the pod (--artifacts "
                     "s3://bucket/prefix, gs://...), a PersistentVolumeClaim "
                     "(--artifacts-pvc NAME), or accept the loss with --ephemeral-artifacts")


@dataclass(frozen=True)
class LooseModule:
    """A top-level module the manifest names that is not from an installed distribution."""

    module: str
    location: str
    """The file or folder it was found in here."""
    kind: str
    """``file`` or ``folder``."""
    places: tuple[str, ...]
    """The JSON paths of the manifest that name it."""

    def warning(self) -> str:
        """One line: the module, where it is named and found, why it matters, the fix."""
        shown = ", ".join(self.places[:_SHOWN_PLACES])
        if len(self.places) > _SHOWN_PLACES:
            shown += f" and {len(self.places) - _SHOWN_PLACES} more"
        return (f"module {self.module!r} ({shown}) is not from an installed distribution: "
                f"found in the loose {self.kind} {self.location}, which the image does not "
                "have; put your stages in a package and build an image FROM the runner "
                f"image that installs it, then pass it with --image ({README_SECTION})")


def _import_paths(manifest: Manifest) -> Iterator[tuple[str, str]]:
    """(``module:attr``, the JSON path naming it) for every import path in the manifest."""
    for name, target in manifest.stages.items():
        yield target, format_path(("stages", name))
    for pipeline, spec in manifest.pipelines.items():
        if spec.context:
            yield spec.context, format_path(("pipelines", pipeline, "context"))
        for field, rule in spec.merge.items():
            if rule not in BUILTIN_RULES:
                yield rule, format_path(("pipelines", pipeline, "merge", field))
    for i, adapter in enumerate(manifest.adapters):
        for key, target in (("from", adapter.from_), ("to", adapter.to), ("fn", adapter.fn)):
            yield target, format_path(("adapters", i, key))


def _where(module: str) -> tuple[str, str] | None:
    """(location, ``file`` or ``folder``) of a top-level module found on ``sys.path``, or
    None when it cannot be found (the manifest's own check says so)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:  # a package (or a namespace package): its folder
        return str(Path(next(iter(spec.submodule_search_locations)))) + "/", "folder"
    if spec.origin and spec.origin not in ("built-in", "frozen"):
        return spec.origin, "file"
    return None


def loose_modules(manifest: Manifest) -> list[LooseModule]:
    """The top-level modules the manifest's import paths name (stages, context types,
    merge rules, adapters) that come neither from the shipped ``runner`` package, nor the
    standard library, nor an installed distribution: what an image would not have.
    Call it after the manifest compiled here, so that its modules' folders are on
    ``sys.path`` as the run would see them."""
    named: dict[str, list[str]] = {}
    for target, place in _import_paths(manifest):
        top = target.partition(":")[0].split(".")[0]
        named.setdefault(top, []).append(place)
    installed = importlib.metadata.packages_distributions()
    found: list[LooseModule] = []
    for module, places in named.items():
        if (module == "runner" or module in installed or module in sys.stdlib_module_names
                or module in sys.builtin_module_names):
            continue
        where = _where(module)
        if where is not None:
            found.append(LooseModule(module, where[0], where[1], tuple(places)))
    return found


def ray_image_warning(image: str) -> str | None:
    """One line when a parallel run's ``image`` looks like the default variant, which has
    no Ray: neither its name nor its tag says ``ray`` (the Ray variant is tagged
    ``...-ray``, README: "The image: two variants"). None otherwise. The image cannot be
    looked into from here (no registry call), so this reads the reference only."""
    reference = image.partition("@")[0]
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:  # no tag (a registry port, or none): all of it is the name
        name, tag = reference, ""
    if "ray" in name.rpartition("/")[2].lower() or "ray" in tag.lower():
        return None
    return (f"--parallel with --image {image}: the default runner image has no Ray, so the "
            "run's pods could not start it; build the Ray variant (docker build --build-arg "
            "VARIANT=ray -t <image>-ray) and pass it with --image")
