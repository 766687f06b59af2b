"""VMIStatus in KubeVirt's shape, and back, for the VMI object in the API server.

The assigned VFs and the desired-state digest are annotations on the VMI:

* ``qat-handler/devices``: ``<entry name>=<resource>@<BDF>``, comma separated
  (``qat1=qat.intel.com/generic@0000:3d:01.0``), shown by ``kubectl describe vmi``;
* ``qat-handler/spec-digest``: what the status describes, so a terminal phase sticks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handler.core.device_codec import from_annotation, to_annotation
from handler.core.interface_status import interfaces_from_json, interfaces_to_json
from handler.core.launcher_failure import failed_by_controller, kept_failure
from handler.core.status import Condition, Phase, VMIStatus

FINALIZER = "qat-handler/domain-cleanup"
DEVICES_ANNOTATION = "qat-handler/devices"
DIGEST_ANNOTATION = "qat-handler/spec-digest"


def status_body(
    status: VMIStatus,
    node_name: str,
    now: str,
    previous: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The ``status`` object; a condition keeps its lastTransitionTime while its status holds.
    A Failed the controller wrote for a lost launcher pod stays (``launcher_failure``)."""
    before = {c.get("type"): c for c in (previous or {}).get("conditions") or [] if isinstance(c, Mapping)}
    conditions = []
    for condition in status.conditions:
        text = "True" if condition.status else "False"
        old = before.get(condition.type)
        since = old.get("lastTransitionTime") if old and old.get("status") == text else now
        conditions.append(
            {
                "type": condition.type,
                "status": text,
                "reason": condition.reason,
                "message": condition.message,
                "lastProbeTime": None,
                "lastTransitionTime": since or now,
            }
        )
    body: dict[str, Any] = {"phase": str(status.phase), "nodeName": node_name, "conditions": conditions}
    body["reason"] = status.reason or None
    body["interfaces"] = interfaces_to_json(status.interfaces) or None
    return kept_failure(body, previous) if previous and failed_by_controller(previous) else body


def status_annotations(status: VMIStatus) -> dict[str, str]:
    return {DEVICES_ANNOTATION: to_annotation(status.devices), DIGEST_ANNOTATION: status.spec_digest}


def status_from_object(obj: Mapping[str, Any]) -> VMIStatus | None:
    """Our last status from a VMI object as served, or None if we never wrote one."""
    status = obj.get("status") or {}
    served_phase = status.get("phase")
    if not isinstance(served_phase, str):
        return None
    try:
        phase = Phase(served_phase)
    except ValueError:
        return None
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    name = (obj.get("metadata") or {}).get("name", "")
    namespace = (obj.get("metadata") or {}).get("namespace", "default")
    conditions = tuple(
        Condition(c.get("type", ""), c.get("status") == "True", c.get("reason") or "", c.get("message") or "")
        for c in status.get("conditions") or []
        if isinstance(c, Mapping)
    )
    return VMIStatus(
        phase=phase,
        domain=f"{namespace}_{name}",
        conditions=conditions,
        devices=from_annotation(annotations.get(DEVICES_ANNOTATION, "")),
        reason=status.get("reason") or "",
        spec_digest=annotations.get(DIGEST_ANNOTATION, ""),
        interfaces=interfaces_from_json(status.get("interfaces")),
    )
