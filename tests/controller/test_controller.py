"""The controller against the fake API server: pods made, phases moved, pods removed; the
scheduler's and kubelet's parts are played by patching pod objects by hand."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from handler.controller.controller import Controller
from handler.core.kube_status import FINALIZER
from handler.core.vmi import NODE_LABEL
from tests.controller.harness import (
    create_vmi,
    phase,
    pods_of,
    set_pod,
    start_controller,
    unschedulable,
    vmi,
    wait_for,
)
from tests.support.fakekube import FakeApiServer

INSUFFICIENT = "0/3 nodes are available: 3 Insufficient qat.intel.com/generic."


@pytest.fixture
def controller(server: FakeApiServer) -> Iterator[Controller]:
    running = start_controller(server)
    yield running
    running.stop()


def one_pod(server: FakeApiServer, uid: str) -> dict[str, Any]:
    pods = wait_for("the launcher pod", lambda: pods_of(server, uid))
    assert len(pods) == 1
    return pods[0]


def test_a_vmi_goes_from_pod_to_scheduling_to_scheduled(server: FakeApiServer, controller: Controller) -> None:
    created = create_vmi(server, vmi("vmi-a", qats=2))
    uid = created["metadata"]["uid"]
    pod = one_pod(server, uid)
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits["qat.intel.com/generic"] == "2"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == uid
    wait_for("Scheduling", lambda: phase(server, "vmi-a") == "Scheduling")

    set_pod(server, pod, conditions=[unschedulable(INSUFFICIENT)])

    def mirrored() -> bool:
        obj = server.get_object("virtualmachineinstances", "default", "vmi-a") or {}
        return any(c.get("message") == INSUFFICIENT for c in obj.get("status", {}).get("conditions") or [])

    wait_for("the Insufficient message on the VMI", mirrored)
    set_pod(server, pod, node="node01", phase="Running", conditions=[{"type": "PodScheduled", "status": "True"}])
    wait_for("Scheduled", lambda: phase(server, "vmi-a") == "Scheduled")
    obj = server.get_object("virtualmachineinstances", "default", "vmi-a")
    assert obj is not None
    assert obj["metadata"]["labels"][NODE_LABEL] == "node01"
    assert obj["status"]["nodeName"] == "node01"
    assert len(pods_of(server, uid)) == 1


def test_a_failed_pod_fails_the_vmi(server: FakeApiServer, controller: Controller) -> None:
    uid = create_vmi(server, vmi("vmi-f"))["metadata"]["uid"]
    set_pod(server, one_pod(server, uid), phase="Failed", message="the launcher exited with code 2")
    wait_for("Failed", lambda: phase(server, "vmi-f") == "Failed")
    obj = server.get_object("virtualmachineinstances", "default", "vmi-f")
    assert obj is not None and obj["status"]["reason"] == "PodFailed"
    assert "exited with code 2" in obj["status"]["conditions"][0]["message"]


def test_a_pod_that_disappears_fails_the_vmi_and_is_not_remade(server: FakeApiServer, controller: Controller) -> None:
    uid = create_vmi(server, vmi("vmi-g"))["metadata"]["uid"]
    pod = one_pod(server, uid)
    wait_for("Scheduling", lambda: phase(server, "vmi-g") == "Scheduling")
    server.remove_object("pods", "default", pod["metadata"]["name"])
    wait_for("Failed", lambda: phase(server, "vmi-g") == "Failed")
    assert controller.wait_idle(30)
    assert pods_of(server, uid) == []


def test_one_bad_vmi_does_not_hold_up_the_others(server: FakeApiServer, controller: Controller) -> None:
    bad = vmi("bad")
    bad["spec"]["domain"]["devices"]["qats"][0]["deviceName"] = "not-a-resource"
    create_vmi(server, bad)
    good = create_vmi(server, vmi("good"))
    one_pod(server, good["metadata"]["uid"])

    def pending_with_reason() -> bool:
        obj = server.get_object("virtualmachineinstances", "default", "bad") or {}
        status = obj.get("status") or {}
        return status.get("phase") == "Pending" and "deviceName" in status["conditions"][0]["message"]

    wait_for("bad VMI Pending with its reason", pending_with_reason)


def test_pod_creation_errors_are_retried(server: FakeApiServer, controller: Controller) -> None:
    server.fail_next("POST", "/pods$", 500, times=2)
    uid = create_vmi(server, vmi("retried"))["metadata"]["uid"]
    one_pod(server, uid)


def test_deleting_a_vmi_removes_its_pod_only_after_the_agent_let_go(
    server: FakeApiServer, controller: Controller
) -> None:
    created = create_vmi(server, vmi("vmi-d"))
    uid = created["metadata"]["uid"]
    pod = one_pod(server, uid)
    set_pod(server, pod, node="node01", phase="Running")
    wait_for("Scheduled", lambda: phase(server, "vmi-d") == "Scheduled")
    obj = server.get_object("virtualmachineinstances", "default", "vmi-d")
    assert obj is not None
    obj["metadata"]["finalizers"] = [FINALIZER]  # what the agent adds before defining the domain
    server.put_object(obj)
    from kubernetes import client

    custom = client.CustomObjectsApi(server.api_client())
    custom.delete_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachineinstances", "vmi-d")
    assert controller.wait_idle(30)
    assert len(pods_of(server, uid)) == 1, "the guest is still shutting down: the pod must stay"
    current = server.get_object("virtualmachineinstances", "default", "vmi-d")
    assert current is not None
    current["metadata"]["finalizers"] = []  # the agent removes it once the domain is undefined
    custom.replace_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachineinstances", "vmi-d", current)
    wait_for("the pod gone", lambda: not pods_of(server, uid))


def test_a_restarted_controller_makes_no_second_pod(server: FakeApiServer) -> None:
    first = start_controller(server)
    uids = [create_vmi(server, vmi(f"r{i}"))["metadata"]["uid"] for i in range(5)]
    for uid in uids:
        one_pod(server, uid)
    first.stop()
    second = start_controller(server)
    try:
        assert second.wait_idle(30)
        for uid in uids:
            assert len(pods_of(server, uid)) == 1
    finally:
        second.stop()


def test_a_standby_does_nothing(server: FakeApiServer) -> None:
    standby = start_controller(server, lead=False)
    try:
        uid = create_vmi(server, vmi("waiting"))["metadata"]["uid"]
        wait_for("the VMI in the standby's cache", lambda: standby.vmis.get("default/waiting"))
        assert standby.wait_idle(30)
        assert pods_of(server, uid) == []
        standby.lead()
        one_pod(server, uid)
    finally:
        standby.stop()


def test_a_pod_the_api_refuses_leaves_the_vmi_pending_with_the_reason(
    server: FakeApiServer, controller: Controller
) -> None:
    server.fail_next("POST", "/pods$", 403, times=3, reason="Forbidden", message='exceeded quota: "qat"')
    uid = create_vmi(server, vmi("quota"))["metadata"]["uid"]

    def pending_with_reason() -> bool:
        obj = server.get_object("virtualmachineinstances", "default", "quota") or {}
        status = obj.get("status") or {}
        conditions = status.get("conditions") or [{}]
        return status.get("phase") == "Pending" and conditions[0].get("reason") == "FailedCreate"

    wait_for("Pending with FailedCreate", pending_with_reason)
    obj = server.get_object("virtualmachineinstances", "default", "quota")
    assert obj is not None and 'exceeded quota: "qat"' in obj["status"]["conditions"][0]["message"]
    one_pod(server, uid)  # the retry succeeds once the API lets it
    wait_for("Scheduling", lambda: phase(server, "quota") == "Scheduling")


def test_a_new_leader_sees_pods_its_cache_has_not_shown_yet(server: FakeApiServer) -> None:
    """The old leader created a pod just before it died; the standby's watch has not delivered it.
    Taking over, the standby lists pods afresh, so it makes no second pod."""
    standby = start_controller(server, lead=False)
    try:
        uid = create_vmi(server, vmi("handover"))["metadata"]["uid"]
        wait_for("the VMI in the standby's cache", lambda: standby.vmis.get("default/handover"))
        server.pause_watches()
        old_leader = start_controller(server)
        one_pod(server, uid)
        old_leader.stop()
        assert standby.pods.items() == [], "the standby's watch must not have shown the pod yet"
        standby.lead()
        assert standby.wait_idle(30)
        assert len(pods_of(server, uid)) == 1
    finally:
        server.resume_watches()
        standby.stop()
    assert len(pods_of(server, uid)) == 1


def running_with_the_agent(server: FakeApiServer, name: str) -> tuple[str, dict[str, Any]]:
    """A VMI through Scheduled, then Running with the agent's finalizer, as the node's agent leaves it."""
    uid = create_vmi(server, vmi(name))["metadata"]["uid"]
    pod = one_pod(server, uid)
    set_pod(server, pod, node="node01", phase="Running")
    wait_for("Scheduled", lambda: phase(server, name) == "Scheduled")
    obj = server.get_object("virtualmachineinstances", "default", name)
    assert obj is not None
    obj["metadata"]["finalizers"] = [FINALIZER]
    obj["status"]["phase"] = "Running"
    server.put_object(obj)
    return uid, pod


def events_of(server: FakeApiServer, name: str) -> list[tuple[str, str, str]]:
    return [
        (e["reason"], e["type"], e["source"]["component"])
        for e in server.objects("events", "default", group="")
        if e["involvedObject"]["name"] == name
    ]


def test_a_running_vmi_whose_launcher_was_killed_fails_once_with_a_warning_event(
    server: FakeApiServer, controller: Controller
) -> None:
    _, pod = running_with_the_agent(server, "killed")
    killed = [{"name": "compute", "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}]
    set_pod(server, pod, phase="Failed", containerStatuses=killed)
    wait_for("Failed", lambda: phase(server, "killed") == "Failed")
    obj = server.get_object("virtualmachineinstances", "default", "killed")
    assert obj is not None and obj["status"]["reason"] == "PodFailed"
    assert obj["metadata"]["finalizers"] == [FINALIZER], "the finalizer is the agent's to remove"
    (ready,) = obj["status"]["conditions"]
    assert "failed while the VMI was Running: compute exited with code 137" in ready["message"]
    assert controller.wait_idle(30)
    assert events_of(server, "killed") == [("PodFailed", "Warning", "qat-handler-controller")]


def test_a_running_vmi_whose_pod_is_force_deleted_fails(server: FakeApiServer, controller: Controller) -> None:
    uid, pod = running_with_the_agent(server, "forced")
    server.remove_object("pods", "default", pod["metadata"]["name"])
    wait_for("Failed", lambda: phase(server, "forced") == "Failed")
    obj = server.get_object("virtualmachineinstances", "default", "forced")
    assert obj is not None and obj["status"]["reason"] == "PodDisappeared"
    assert controller.wait_idle(30)
    assert pods_of(server, uid) == [], "a Failed VMI gets no new pod"
    assert events_of(server, "forced") == [("PodDisappeared", "Warning", "qat-handler-controller")]


def test_a_launcher_pod_being_deleted_gracefully_leaves_the_vmi_to_the_agent(
    server: FakeApiServer, controller: Controller
) -> None:
    """`kubectl delete pod`: the launcher forwards the stop and holds its pod until the guest is off."""
    _, pod = running_with_the_agent(server, "stopping")
    leaving = server.get_object("pods", "default", pod["metadata"]["name"])
    assert leaving is not None
    leaving["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    server.put_object(leaving)
    key = f"default/{leaving['metadata']['name']}"
    wait_for(
        "the deletion in the pod cache", lambda: (controller.pods.get(key) or {})["metadata"].get("deletionTimestamp")
    )
    assert controller.wait_idle(30)
    assert phase(server, "stopping") == "Running"
    assert events_of(server, "stopping") == []
