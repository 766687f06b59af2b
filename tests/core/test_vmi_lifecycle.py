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


def test_a_running_vmi_whose_launcher_pod_is_gone_fails_even_while_the_agent_holds_it() -> None:
    """As KubeVirt does: the pod is the VMI's life. The agent's finalizer no longer shields it;
    the agent, seeing the Failed, stops the guest and lets go of the domain."""
    for phase in ("Scheduled", "Running"):
        held = vmi(phase, finalizers=[FINALIZER])
        (step,) = decide(held, [], False, SETTINGS)
        assert isinstance(step, SetStatus) and step.warn
        assert (step.phase, step.reason) == ("Failed", "PodDisappeared")
        assert step.condition is not None and (step.condition.type, step.condition.status) == ("Ready", "False")
        assert f"disappeared while the VMI was {phase}" in step.condition.message
        assert "stops the guest" in step.condition.message and "fix:" in step.condition.message


def test_a_launcher_pod_that_ended_under_a_running_vmi_fails_it_with_the_exit_code() -> None:
    killed = pod("Failed", node="node01")
    killed["status"]["containerStatuses"] = [{"name": "compute", "state": {"terminated": {"exitCode": 137}}}]
    (step,) = decide(vmi("Running", finalizers=[FINALIZER]), [killed], False, SETTINGS)
    assert isinstance(step, SetStatus) and (step.phase, step.reason) == ("Failed", "PodFailed")
    assert step.condition is not None
    assert "virt-launcher-vmi-qat-abcde failed while the VMI was Running: compute exited with code 137" in (
        step.condition.message
    )
    (step,) = decide(vmi("Running"), [pod("Succeeded", node="node01")], False, SETTINGS)
    assert isinstance(step, SetStatus) and step.reason == "PodFailed"
    assert step.condition is not None and " ended while the VMI was Running" in step.condition.message


def test_a_final_vmi_stays_final_whatever_its_pod_does() -> None:
    for phase in ("Succeeded", "Failed"):
        for pods in ([], [pod("Failed", node="n")], [pod("Succeeded", node="n")]):
            assert decide(vmi(phase, finalizers=[FINALIZER]), pods, False, SETTINGS) == ()


def test_a_launcher_pod_being_deleted_gracefully_does_not_fail_the_vmi() -> None:
    """The launcher forwards SIGTERM and holds its pod until the agent has the guest off."""
    leaving = pod("Running", node="node01", deletionTimestamp="2026-12-01T00:00:00Z")
    assert decide(vmi("Running", finalizers=[FINALIZER]), [leaving], False, SETTINGS) == ()


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
