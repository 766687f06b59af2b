"""The on-disk shape of a VMI's status in the bare-metal state file."""

from __future__ import annotations

from typing import Any

from handler.core.device_codec import STATUS_RECORDS, decode, encode
from handler.core.interface_status import interfaces_from_json, interfaces_to_json
from handler.core.status import Condition, Phase, VMIStatus


def status_to_json(status: VMIStatus, transitions: dict[str, float]) -> dict[str, Any]:
    return {
        "phase": str(status.phase),
        "reason": status.reason,
        "domain": status.domain,
        "specDigest": status.spec_digest,
        "devices": [encode(device, STATUS_RECORDS) for device in status.devices],
        "interfaces": interfaces_to_json(status.interfaces),
        "conditions": [
            {
                "type": c.type,
                "status": "True" if c.status else "False",
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": transitions.get(c.type),
            }
            for c in status.conditions
        ],
    }


def status_from_json(data: dict[str, Any]) -> VMIStatus | None:
    try:
        devices = [decode(item, STATUS_RECORDS) for item in data.get("devices", [])]
        if None in devices:
            return None
        conditions = tuple(
            Condition(c["type"], c["status"] == "True", c.get("reason", ""), c.get("message", ""))
            for c in data.get("conditions", [])
        )
        return VMIStatus(
            phase=Phase(data["phase"]),
            domain=data["domain"],
            conditions=conditions,
            devices=tuple(device for device in devices if device is not None),
            reason=data.get("reason", ""),
            spec_digest=data.get("specDigest", ""),
            interfaces=interfaces_from_json(data.get("interfaces")),
        )
    except (KeyError, TypeError, ValueError):
        return None
