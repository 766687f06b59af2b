"""Graceful pod deletion, as kube-apiserver's pod strategy decides it (``CheckGracefulDelete``).

A DELETE of a pod that a node may still be running does not remove it: the pod is marked
with ``deletionTimestamp`` and ``deletionGracePeriodSeconds`` and stays until the kubelet,
once the containers have stopped, deletes it again with grace 0. The grace is the request's
``gracePeriodSeconds``, else the pod's ``spec.terminationGracePeriodSeconds`` (default 30).
A pod that was never bound to a node, or has already finished, goes at once.

Only ``FakeCluster`` turns this on (a bare ``FakeApiServer`` has no kubelet to finish the
deletion, so there pods still go at once).
"""

from __future__ import annotations

from typing import Any

from .resources import Obj, ResourceType

DEFAULT_POD_GRACE = 30
_PODS = ("", "pods")


def pod_grace(rt: ResourceType, obj: Obj, options: Any) -> int:
    """Seconds of grace for deleting ``obj``: 0 (now) for anything but a pod that a node may run."""
    if rt.storage_key != _PODS:
        return 0
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
        return 0
    requested = options.get("gracePeriodSeconds") if isinstance(options, dict) else None
    grace = requested if requested is not None else spec.get("terminationGracePeriodSeconds", DEFAULT_POD_GRACE)
    return max(int(grace), 0)
