"""The controller's decisions for one VMI, as data (no API server)."""

from __future__ import annotations

import copy
from typing import Any

from handler.core.kube_status import FINALIZER
from handler.core.launcher_pod import LauncherPodSettings
from handler.core.vmi import NODE_LABEL
from handler.core.vmi_lifecycle import CreatePod, DeletePod, SetStatus, VMICondition, decide, status_patch

SETTINGS = LauncherPodSettings("qat-handler:0.1.0")
UID = "6f1c1c9e-4e55-4a8b-9f7e-6c2b0a7d0001"
INSUFFICIENT = "0/3 nodes are available: 3 Insufficient qat.intel.com/generic."


def vmi(phase: str = "", **meta: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "vmi-qat", "namespace": "default", "uid": UID, "resourceVersion": "7", **meta},
        "spec": {
            "domain": {
                "cpu": {"cores": 1},
                "memory": {"guest": "512Mi"},
                "devices": {"qats": [{"name": "qat1", "deviceName": "qat.intel.com/generic"}]},
            }
        },
    }
    if phase:
        body["status"] = {"phase": phase}
    return body


def pod(phase: str = "Pending", node: str = "", conditions: list[dict[str, Any]] | None = None, **meta: Any) -> Any:
    return {
        "metadata": {"name": "virt-launcher-vmi-qat-abcde", "namespace": "default", **meta},
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": phase, "conditions": conditions or []},
    }


def test_a_new_vmi_gets_its_pod() -> None:
    (step,) = decide(vmi(), [], False, SETTINGS)
    assert isinstance(step, CreatePod)
    assert step.pod["metadata"]["labels"]["kubevirt.io/created-by"] == UID


def test_no_second_pod_while_one_is_asked_for_or_exists() -> None:
    assert decide(vmi(), [], True, SETTINGS) == ()
    steps = decide(vmi(), [pod()], False, SETTINGS)
    assert not any(isinstance(s, CreatePod) for s in steps)


def test_unschedulable_pod_is_mirrored_onto_the_vmi() -> None:
    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": INSUFFICIENT}
    (step,) = decide(vmi("Pending"), [pod(conditions=[unschedulable])], False, SETTINGS)
    mirrored = VMICondition("PodScheduled", "False", "Unschedulable", INSUFFICIENT)
    assert step == SetStatus("Scheduling", condition=mirrored)
    written = copy.deepcopy(vmi("Scheduling"))
    written["status"]["conditions"] = status_patch(step, "7", "now")["status"]["conditions"]
    assert decide(written, [pod(conditions=[unschedulable])], False, SETTINGS) == (), "no rewrite of the same"


def test_bound_and_running_pod_schedules_the_vmi_on_its_node() -> None:
    (step,) = decide(vmi("Scheduling"), [pod("Running", node="node01")], False, SETTINGS)
    assert step == SetStatus("Scheduled", node_name="node01")
    patch = status_patch(step, "7", "now")
    assert patch["metadata"] == {"resourceVersion": "7", "labels": {NODE_LABEL: "node01"}}
    assert patch["status"]["nodeName"] == "node01"


def test_bound_but_not_running_stays_scheduling() -> None:
    (step,) = decide(vmi("Scheduling"), [pod("Pending", node="node01")], False, SETTINGS)
    assert isinstance(step, SetStatus) and step.phase == "Scheduling"


def test_after_scheduled_the_agent_owns_the_phase() -> None:
    for phase in ("Scheduled", "Running", "Succeeded", "Failed"):
        assert decide(vmi(phase), [pod("Running", node="node01")], False, SETTINGS) == ()


def test_pod_failure_or_loss_before_the_guest_is_done_fails_the_vmi() -> None:
    (step,) = decide(vmi("Scheduling"), [pod("Failed")], False, SETTINGS)
    assert isinstance(step, SetStatus) and (step.phase, step.reason) == ("Failed", "PodFailed")
    (step,) = decide(vmi("Scheduled"), [], False, SETTINGS)
    assert isinstance(step, SetStatus) and (step.phase, step.reason) == ("Failed", "PodDisappeared")


def test_while_the_agent_holds_its_finalizer_the_guest_is_its_business() -> None:
    held = vmi("Running", finalizers=[FINALIZER])
    assert decide(held, [], False, SETTINGS) == ()
    assert decide(held, [pod("Failed")], False, SETTINGS) == ()


def test_a_deleted_vmi_loses_its_pod_only_after_the_agent_let_go() -> None:
    deleting = vmi("Running", finalizers=[FINALIZER], deletionTimestamp="2026-12-01T00:00:00Z")
    assert decide(deleting, [pod("Running", node="n")], False, SETTINGS) == ()
    released = vmi("Succeeded", deletionTimestamp="2026-12-01T00:00:00Z")
    assert decide(released, [pod("Running", node="n")], False, SETTINGS) == (
        DeletePod("default", "virt-launcher-vmi-qat-abcde"),
    )


def test_a_vmi_the_stack_refuses_stays_pending_with_the_reason() -> None:
    bad = vmi()
    bad["spec"]["domain"]["devices"]["qats"][0]["deviceName"] = "no-slash"
    (step,) = decide(bad, [], False, SETTINGS)
    assert isinstance(step, SetStatus) and step.phase == "Pending"
    assert step.condition is not None and "deviceName" in step.condition.message
