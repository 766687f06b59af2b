"""A VMI the controller failed because its launcher pod failed, ended or disappeared before
the guest was done (KubeVirt fails such a VMI too: the pod is the VMI's life).

That Failed is final for everyone: the node's agent never starts a guest for it, stops one
that runs, releases its devices, and keeps the phase, reason and ``Ready`` condition the
controller wrote (its own progress goes to the other conditions and to Events).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

POD_FAILED, POD_GONE = "PodFailed", "PodDisappeared"
LAUNCHER_FAILURES = frozenset((POD_FAILED, POD_GONE))


def failed_by_controller(status: Mapping[str, Any] | None) -> bool:
    """``status`` (a VMI's, as served) is a Failed the controller wrote for its launcher pod."""
    status = status or {}
    return status.get("phase") == "Failed" and status.get("reason") in LAUNCHER_FAILURES


def kept_failure(body: dict[str, Any], served: Mapping[str, Any]) -> dict[str, Any]:
    """The agent's status ``body`` over a VMI the controller failed: phase, reason and Ready stay."""
    ready = [dict(c) for c in served.get("conditions") or [] if isinstance(c, Mapping) and c.get("type") == "Ready"]
    conditions = [c for c in body.get("conditions") or [] if c.get("type") != "Ready"]
    return {**body, "phase": "Failed", "reason": served.get("reason"), "conditions": [*ready, *conditions]}
