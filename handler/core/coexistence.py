"""Refusing to run beside KubeVirt: its controllers would act on every VMI too.

KubeVirt is taken to be running when its ``virt-controller`` Deployment exists with
replicas, or when a KubeVirt CR reports a deploying or deployed phase.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from handler.core.refusal import Refusal

VIRT_CONTROLLER = "virt-controller"
RUNNING_PHASES = ("Deploying", "Deployed")


def kubevirt_conflict(
    who: str, namespace: str, virt_controller: Mapping[str, Any] | None, kubevirts: Iterable[Mapping[str, Any]]
) -> Refusal | None:
    """Why ``who`` must not start in this cluster, or None when KubeVirt is not running."""
    found = ""
    if virt_controller is not None and (virt_controller.get("spec") or {}).get("replicas", 1) != 0:
        found = f"Deployment {namespace}/{VIRT_CONTROLLER}"
    for cr in kubevirts:
        phase = (cr.get("status") or {}).get("phase")
        if not found and phase in RUNNING_PHASES:
            meta = cr.get("metadata") or {}
            found = f"KubeVirt {meta.get('namespace', namespace)}/{meta.get('name')} (phase {phase})"
    if not found:
        return None
    return Refusal(
        "KubeVirtRunning",
        f"KubeVirt ({found})",
        f"is running in this cluster, and its controllers would act on every VMI as well as {who}",
        "use KubeVirt itself on this cluster, or uninstall KubeVirt before starting qat-handler",
    )
