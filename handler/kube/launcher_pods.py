"""Checking a handoff against the launcher pod the API knows, so a pod cannot speak for another VMI."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from handler.core.handoff import Handoff
from handler.core.launcher_pod import CREATED_BY_LABEL, ID_LABEL
from handler.core.refusal import Refusal
from handler.core.vmi import VMI

__all__ = ["CREATED_BY_LABEL", "handoff_refusal", "pod_with_uid", "vouches_for"]


def pod_with_uid(pods: Iterable[dict[str, Any]], uid: str) -> dict[str, Any] | None:
    return next((pod for pod in pods if (pod.get("metadata") or {}).get("uid") == uid), None)


def handoff_refusal(vmi: VMI, slot_pod_uid: str, handoff: Handoff, pod: dict[str, Any] | None) -> Refusal | None:
    """Why this slot's handoff may not provide devices for ``vmi``, or None if it may."""

    def forged(problem: str) -> Refusal:
        return Refusal(
            "HandoffRejected",
            f"handoff in slot {slot_pod_uid}",
            f"{problem}; it is forged or stale",
            f"only the launcher pod of {vmi.key} (label {CREATED_BY_LABEL}={vmi.uid}) may hand over its devices",
        )

    if handoff.pod_uid != slot_pod_uid:
        return forged(f"claims pod {handoff.pod_uid} but sits in the slot of pod {slot_pod_uid}")
    if handoff.vmi_uid != vmi.uid or handoff.key != vmi.key:
        return forged(f"names VMI {handoff.key} ({handoff.vmi_uid})")
    if pod is None:
        return forged("belongs to no pod on this node")
    meta = pod.get("metadata") or {}
    if meta.get("namespace") != vmi.namespace:
        return forged(f"comes from a pod in namespace {meta.get('namespace')}")
    if (meta.get("labels") or {}).get(CREATED_BY_LABEL) != vmi.uid:
        return forged(f"comes from pod {meta.get('name')}, which was not created for this VMI")
    return None


def vouches_for(pod: dict[str, Any] | None, handoff: Handoff) -> bool:
    """Whether the API's pod backs what a handoff says of itself when no VMI is left to check it
    against: the pod is in the handoff's namespace and labelled as the launcher of that VMI, by
    uid and by name. The agent acts on such a handoff's VMI key, so a pod may only name its own."""
    meta = (pod or {}).get("metadata") or {}
    labels = meta.get("labels") or {}
    return (
        pod is not None
        and meta.get("namespace") == handoff.namespace
        and labels.get(CREATED_BY_LABEL) == handoff.vmi_uid
        and labels.get(ID_LABEL) == handoff.name
    )
