"""The pod ``status`` documents the fake kubelet writes, shaped as kubelet's status manager writes them."""

from __future__ import annotations

from typing import Any

from .resources import Obj
from .store import now_rfc3339

HOST_IP = "192.0.2.10"  # TEST-NET-1: an address that is nobody's


def _conditions(pod: Obj, ready: bool, reason: str | None = None) -> list[Obj]:
    """Kubelet's conditions, keeping the scheduler's PodScheduled."""
    now = now_rfc3339()
    kept = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"]
    out = list(kept)
    for kind in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"):
        value = ready or kind in ("PodReadyToStartContainers", "Initialized")
        condition: dict[str, Any] = {
            "type": kind,
            "status": "True" if value else "False",
            "lastProbeTime": None,
            "lastTransitionTime": now,
        }
        if not value and reason:
            condition["reason"] = reason
        out.append(condition)
    return out


def _pod_ip(pod: Obj) -> str:
    return "10.244.0." + str(int(pod["metadata"]["uid"].replace("-", "")[:6], 16) % 250 + 2)


def _image(pod: Obj, name: str) -> str:
    containers = (pod.get("spec") or {}).get("containers") or []
    return next((str(c.get("image", "")) for c in containers if c["name"] == name), "")


def running_status(pod: Obj, started_at: str, pids: dict[str, int]) -> Obj:
    statuses = [
        {
            "name": name,
            "ready": True,
            "started": True,
            "restartCount": 0,
            "image": _image(pod, name),
            "imageID": "",
            "containerID": f"fake://{pid}",
            "state": {"running": {"startedAt": started_at}},
        }
        for name, pid in pids.items()
    ]
    return {
        "phase": "Running",
        "hostIP": HOST_IP,
        "podIP": _pod_ip(pod),
        "podIPs": [{"ip": _pod_ip(pod)}],
        "startTime": started_at,
        "conditions": _conditions(pod, ready=True),
        "containerStatuses": statuses,
    }


def terminated_status(pod: Obj, started_at: str, exit_codes: dict[str, int]) -> Obj:
    finished = now_rfc3339()
    statuses = [
        {
            "name": name,
            "ready": False,
            "started": False,
            "restartCount": 0,
            "image": _image(pod, name),
            "imageID": "",
            "state": {
                "terminated": {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": started_at,
                    "finishedAt": finished,
                }
            },
        }
        for name, code in exit_codes.items()
    ]
    succeeded = all(code == 0 for code in exit_codes.values())
    return {
        "phase": "Succeeded" if succeeded else "Failed",
        "conditions": _conditions(pod, ready=False, reason="PodCompleted" if succeeded else "PodFailed"),
        "containerStatuses": statuses,
    }


def failed_status(pod: Obj, reason: str, message: str) -> Obj:
    """Refused before any container ran (admission, a spec the kubelet cannot run)."""
    return {"phase": "Failed", "reason": reason, "message": message, "startTime": now_rfc3339()}


def waiting_status(pod: Obj, reason: str, message: str) -> Obj:
    containers = (pod.get("spec") or {}).get("containers") or []
    statuses = [
        {
            "name": c["name"],
            "ready": False,
            "started": False,
            "restartCount": 0,
            "image": str(c.get("image", "")),
            "imageID": "",
            "state": {"waiting": {"reason": reason, "message": message}},
        }
        for c in containers
    ]
    return {"phase": "Pending", "hostIP": HOST_IP, "containerStatuses": statuses}
