"""The controller's decisions for one VMI and its launcher pods (KubeVirt's virt-controller role).

Phases move as KubeVirt moves them: Pending while there is no pod, Scheduling once the pod
exists (its ``PodScheduled=False`` condition mirrored onto the VMI), Scheduled once the pod
is bound and running (label ``kubevirt.io/nodeName`` and ``status.nodeName`` set; the node's
agent takes over from there), and Failed when the pod fails, ends or disappears before the
VMI is final, Running included (the agent then stops the guest: ``launcher_failure``). The
agent's finalizer marks a domain that is not cleaned up yet: while it is on a deleted VMI
the controller does not delete the pod.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from handler.core.kube_status import FINALIZER
from handler.core.launcher_failure import POD_FAILED, POD_GONE
from handler.core.launcher_pod import LauncherPodSettings, render_launcher_pod
from handler.core.refusal import Refused
from handler.core.vmi import NODE_LABEL

PENDING, SCHEDULING, SCHEDULED = "Pending", "Scheduling", "Scheduled"
BEFORE_POD = ("", PENDING)
CONTROLLER_PHASES = (*BEFORE_POD, SCHEDULING)
TERMINAL = ("Succeeded", "Failed")
POD_ENDED = ("Failed", "Succeeded")

Obj = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CreatePod:
    pod: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeletePod:
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class VMICondition:
    type: str
    status: str
    """"True", "False" or "Unknown", as the API spells it."""
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class SetStatus:
    """A merge patch of ``status`` (and the node label) made only against the VMI version decided on."""

    phase: str
    reason: str = ""
    condition: VMICondition | None = None
    node_name: str = ""
    warn: bool = False
    """Also announce it as a Warning Event (reason and message of the condition), once written."""


Step = CreatePod | DeletePod | SetStatus


def decide(vmi: Obj, pods: Sequence[Obj], asked: bool, settings: LauncherPodSettings) -> tuple[Step, ...]:
    """What to do for ``vmi`` given the launcher pods labelled with its uid.

    ``asked``: a pod was created for it that the pod cache has not shown yet, so no second one.
    """
    meta = vmi.get("metadata") or {}
    status = vmi.get("status") or {}
    phase = str(status.get("phase") or "")
    agent_holds = FINALIZER in (meta.get("finalizers") or [])
    if meta.get("deletionTimestamp"):
        return () if agent_holds else _delete_all(pods)
    if phase in TERMINAL:
        return ()
    pod = _newest(pods)
    if pod is None:
        if asked:
            return ()
        if phase in BEFORE_POD:
            return _create(vmi, settings, status)
        return (_failed(POD_GONE, f"its launcher pod disappeared while the VMI was {phase}"),)
    return _follow(pod, phase, status)


def _create(vmi: Obj, settings: LauncherPodSettings, status: Obj) -> tuple[Step, ...]:
    try:
        return (CreatePod(render_launcher_pod(vmi, settings)),)
    except Refused as refused:
        refusal = refused.refusal
        wanted = SetStatus(PENDING, "", VMICondition("Synchronized", "False", refusal.reason, refusal.line()))
        return () if _already(status, wanted) else (wanted,)


def _follow(pod: Obj, phase: str, status: Obj) -> tuple[Step, ...]:
    pod_status = pod.get("status") or {}
    pod_phase = pod_status.get("phase")
    if pod_phase in POD_ENDED:
        # The launcher holds its pod until the guest is off, so an ended pod under a VMI that is
        # not final means the launcher died (SIGKILL, OOM, a crash) with the guest still wanted.
        why = pod_status.get("message") or pod_status.get("reason") or _exit_codes(pod_status)
        verb = "failed" if pod_phase == "Failed" else "ended"
        return (_failed(POD_FAILED, f"launcher pod {_name(pod)} {verb} while the VMI was {phase or PENDING}: {why}"),)
    if phase not in CONTROLLER_PHASES:
        return ()  # Scheduled and on: the agent's
    node = str((pod.get("spec") or {}).get("nodeName") or "")
    if node and pod_phase == "Running":
        return (SetStatus(SCHEDULED, node_name=node),)
    scheduled = _condition(pod_status, "PodScheduled") or {}
    # The pod's own PodScheduled condition, mirrored: "0/3 nodes are available: ...".
    mirrored = VMICondition(
        "PodScheduled",
        str(scheduled.get("status") or ("True" if node else "Unknown")),
        str(scheduled.get("reason") or ""),
        str(scheduled.get("message") or ""),
    )
    wanted = SetStatus(SCHEDULING, condition=mirrored)
    return () if _already(status, wanted) else (wanted,)


def _failed(reason: str, message: str) -> SetStatus:
    message += "; the node's agent stops the guest and releases its devices; fix: create the VMI again to rerun it"
    return SetStatus("Failed", reason, VMICondition("Ready", "False", reason, message), warn=True)


def _exit_codes(pod_status: Obj) -> str:
    codes = [
        f"{c.get('name')} exited with code {term.get('exitCode')}"
        for c in pod_status.get("containerStatuses") or []
        if (term := (c.get("state") or {}).get("terminated"))
    ]
    return ", ".join(codes) or "its container exited"


def _delete_all(pods: Sequence[Obj]) -> tuple[Step, ...]:
    return tuple(
        DeletePod(str(p["metadata"]["namespace"]), str(p["metadata"]["name"]))
        for p in pods
        if not (p.get("metadata") or {}).get("deletionTimestamp")
    )


def _newest(pods: Sequence[Obj]) -> Obj | None:
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")] or list(pods)
    return max(live, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""), default=None)


def _condition(status: Obj, kind: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def _already(status: Obj, wanted: SetStatus) -> bool:
    if status.get("phase") != wanted.phase or wanted.condition is None:
        return status.get("phase") == wanted.phase
    current = _condition(status, wanted.condition.type) or {}
    return (
        current.get("status") == wanted.condition.status
        and (current.get("reason") or "") == wanted.condition.reason
        and (current.get("message") or "") == wanted.condition.message
    )


def _name(pod: Obj) -> str:
    return str((pod.get("metadata") or {}).get("name") or "")


def status_patch(step: SetStatus, resource_version: str, now: str) -> dict[str, Any]:
    """The merge patch for ``step``; the resourceVersion makes it fail (409) if the VMI moved on."""
    conditions = []
    if step.condition is not None:
        c = step.condition
        conditions.append(
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason or None,
                "message": c.message or None,
                "lastProbeTime": None,
                "lastTransitionTime": now,
            }
        )
    body: dict[str, Any] = {"phase": step.phase, "reason": step.reason or None, "conditions": conditions}
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if step.node_name:
        body["nodeName"] = step.node_name
        metadata["labels"] = {NODE_LABEL: step.node_name}
    return {"metadata": metadata, "status": body}
