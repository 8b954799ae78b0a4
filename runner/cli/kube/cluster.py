"""The Kubernetes commands' connection to the cluster, and a run's status in one line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.errors import UsageError

if TYPE_CHECKING:
    from runner.k8s.controller import Controller, RunStatus

__all__ = ["INSTALL_HINT", "connect", "describe", "need_client"]

INSTALL_HINT = "install the k8s extra: pip install 'runner[k8s]'"


def need_client() -> None:
    """A usage error (exit 2) when the ``k8s`` extra is not installed."""
    try:
        import kubernetes  # noqa: F401
    except ImportError:
        raise UsageError("the Kubernetes commands need the kubernetes client: "
                         f"{INSTALL_HINT}") from None


def connect(namespace: str | None, context: str | None, kubeconfig: str | None) -> Controller:
    """The controller for the namespace (the kubernetes client is imported only here)."""
    need_client()
    from runner.k8s.controller import Controller

    return Controller.connect(namespace, context=context, kubeconfig=kubeconfig)


def describe(status: RunStatus) -> str:
    """A run's status in one line."""
    line = f"{status.run_id}: {status.phase}"
    if status.reason:
        line += f" ({status.reason})"
    if status.ray:
        line += f"; ray cluster {status.ray}"
    return line
