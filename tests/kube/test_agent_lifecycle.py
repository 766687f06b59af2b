"""The Kubernetes agent end to end on the fake API server: which VMIs it takes, when it
starts them, what it writes back, and how a delete ends."""

from __future__ import annotations

from handler.core.kube_status import DEVICES_ANNOTATION, FINALIZER
from handler.core.vmi import NODE_LABEL
from tests.kube.agent_harness import GROUP, HOST_KEPT_VF, NODE, VMIS, Cluster, eventually

ALLOWED_PATCH_PATHS = ("status", "metadata.finalizers", "metadata.annotations", "metadata.resourceVersion")


def test_vmi_of_another_node_is_ignored(cluster: Cluster) -> None:
    cluster.set_configmap_gates("QAT")
    cluster.start_agent()
    other = cluster.create_vmi("elsewhere", node="node02")
    # Its launcher even left a genuine-looking handoff in this node's run directory.
    cluster.write_handoff(cluster.create_pod(other, node="node02"), other, {"QAT0": str(cluster.usable_vfs[0])})
    mine = cluster.create_vmi("here")
    cluster.launch(mine, cluster.usable_vfs[1])

    eventually(lambda: cluster.phase("here") == "Running", what="this node's VMI running")
    assert cluster.domain("elsewhere") is None
    untouched = cluster.vmi("elsewhere")
    assert untouched is not None
    assert "status" not in untouched or not untouched["status"]
    assert not untouched["metadata"].get("finalizers")
    assert not (untouched["metadata"].get("annotations") or {})
    assert not cluster.server.requests("PATCH", rf"/{VMIS}/elsewhere")
    assert cluster.events(other["metadata"]["uid"]) == []


def test_handoff_after_the_vmi_keeps_it_scheduled_until_it_arrives(cluster: Cluster) -> None:
    cluster.set_configmap_gates("QAT")
    cluster.start_agent()
    vmi = cluster.create_vmi("late-launcher")
    pod_uid = cluster.create_pod(vmi)

    eventually(lambda: cluster.synchronized_reason("late-launcher") == "WaitingForLauncher", what="WaitingForLauncher")
    assert cluster.phase("late-launcher") == "Scheduled"
    assert (cluster.condition("late-launcher", "Ready") or {}).get("status") == "False"
    assert cluster.domain("late-launcher") is None
    assert not cluster.has_finalizer("late-launcher"), "the finalizer comes just before the domain"

    cluster.write_handoff(pod_uid, vmi, {"QAT0": str(cluster.usable_vfs[0])})
    eventually(lambda: cluster.phase("late-launcher") == "Running", what="Running after the handoff")
    assert cluster.domain_running("late-launcher")
    assert cluster.synchronized_reason("late-launcher") is None
    assert cluster.has_finalizer("late-launcher")
    eventually(lambda: (cluster.report(pod_uid) or {}).get("phase") == "Running", what="the report to the launcher")


def test_handoff_before_the_vmi_reaches_this_node(cluster: Cluster) -> None:
    """The launcher runs (and hands over) before virt-controller labels the VMI with its node."""
    cluster.set_configmap_gates("QAT")
    node = cluster.start_agent()
    vmi = cluster.create_vmi("early-launcher", node=None)
    pod_uid = cluster.launch(vmi, cluster.usable_vfs[0])
    eventually(lambda: node.slots.slot(pod_uid) is not None, what="the agent to read the slot")
    eventually(lambda: node.source.pods.get(f"{cluster.namespace}/virt-launcher-early-launcher-0"), what="pod cached")
    assert cluster.domain("early-launcher") is None

    cluster.label_vmi("early-launcher", "node01")
    eventually(lambda: cluster.phase("early-launcher") == "Running", what="Running once labelled")
    assert cluster.domain_running("early-launcher")
    assert cluster.synchronized_reason("early-launcher") is None


def test_deleting_a_vmi_undefines_the_domain_then_drops_the_finalizer(cluster: Cluster) -> None:
    cluster.set_configmap_gates("QAT")
    cluster.start_agent()
    vmi = cluster.create_vmi("doomed", grace=5)
    cluster.launch(vmi, cluster.usable_vfs[0])
    eventually(lambda: cluster.phase("doomed") == "Running", what="Running")
    assert cluster.finalizers("doomed") == [FINALIZER]

    cluster.delete_vmi("doomed")
    eventually(lambda: cluster.vmi("doomed") is None, what="the VMI to be gone from the API")
    assert cluster.domain("doomed") is None
    finalizer_patches = [r for r in cluster.vmi_patches() if "metadata.finalizers" in r.touched]
    assert [r.body["metadata"]["finalizers"] for r in finalizer_patches] == [[FINALIZER], []]
    assert {"ShuttingDown", "Stopped"} <= set(cluster.event_reasons(vmi["metadata"]["uid"]))


def test_events_name_the_vf_and_a_host_bound_vf_is_rejected(cluster: Cluster) -> None:
    cluster.set_configmap_gates("QAT")
    cluster.start_agent()
    good = cluster.create_vmi("good")
    bdf = cluster.usable_vfs[0]
    cluster.launch(good, bdf)
    bad = cluster.create_vmi("bad")
    kept = cluster.vfs[HOST_KEPT_VF]
    cluster.launch(bad, kept)

    eventually(lambda: cluster.phase("good") == "Running", what="Running")
    uid = good["metadata"]["uid"]
    eventually(lambda: {"Created", "Started"} <= set(cluster.event_reasons(uid)), what="Created and Started")
    events = {e["reason"]: e for e in cluster.events(uid)}
    assert str(bdf) in events["Created"]["message"]
    for reason in ("Created", "Started"):
        assert events[reason]["type"] == "Normal"
        assert events[reason]["involvedObject"]["kind"] == "VirtualMachineInstance"
        assert events[reason]["involvedObject"]["name"] == "good"
    assert cluster.annotation("good", DEVICES_ANNOTATION) == f"qat1=qat.intel.com/generic@{bdf}"

    eventually(lambda: cluster.synchronized_reason("bad") == "DeviceRejected", what="DeviceRejected")
    message = cluster.message("bad", "Synchronized")
    assert str(kept) in message and "c6xxvf" in message and "fix:" in message
    rejected = eventually(lambda: cluster.events_with(bad["metadata"]["uid"], "DeviceRejected"))
    assert rejected[0]["type"] == "Warning"
    assert str(kept) in rejected[0]["message"] and "fix:" in rejected[0]["message"]
    assert cluster.phase("bad") == "Scheduled"
    assert cluster.domain("bad") is None


def test_writes_touch_only_status_finalizers_and_annotations(any_cluster: Cluster) -> None:
    """KubeVirt's CRD (status through the main resource) and a CRD with /status alike."""
    cluster = any_cluster
    subresource = cluster.server.resource_type(VMIS, GROUP).status_subresource
    cluster.set_configmap_gates("QAT")
    node = cluster.start_agent()
    assert node.status_subresource is subresource
    waiting = cluster.create_vmi("waiting")
    cluster.create_pod(waiting)
    vmi = cluster.create_vmi("full-life", grace=5)
    cluster.launch(vmi, cluster.usable_vfs[0])
    eventually(lambda: cluster.phase("full-life") == "Running", what="Running")
    eventually(lambda: cluster.synchronized_reason("waiting") == "WaitingForLauncher", what="WaitingForLauncher")
    cluster.delete_vmi("full-life")
    eventually(lambda: cluster.vmi("full-life") is None, what="the VMI to be gone")

    assert cluster.server.requests("PUT", VMIS) == [], "the agent must never send back a whole VMI"
    patches = cluster.vmi_patches()
    assert patches and all(r.content_type == "application/merge-patch+json" for r in patches)
    for record in patches:
        touched = record.touched
        assert touched and all(path.startswith(ALLOWED_PATCH_PATHS) for path in touched), (record.path, touched)
        to_status = record.path.endswith("/status")
        assert to_status is (subresource and any(path.startswith("status") for path in touched)), record.path
        if subresource:
            # The main resource ignores status there, and /status ignores everything but status
            # (its resourceVersion is the guard the status was computed under, not a change).
            changed = [path for path in touched if path != "metadata.resourceVersion"]
            assert all(path.startswith("status") for path in changed) is to_status, (record.path, touched)
    assert any(r.path.endswith("/status") for r in patches) is subresource


def test_a_vmi_the_controller_failed_never_starts_here(cluster: Cluster) -> None:
    """Its launcher pod failed or vanished before the guest ran: the agent leaves the VMI Failed."""
    cluster.set_configmap_gates("QAT")
    cluster.start_agent()
    vmi = cluster.create_vmi("pod-lost", node=None)
    body = cluster.vmi("pod-lost")
    assert body is not None
    body["status"] = {"phase": "Failed", "reason": "PodDisappeared"}
    body["metadata"]["labels"] = {NODE_LABEL: NODE}
    cluster.server.put_object(body)
    cluster.launch(vmi, cluster.usable_vfs[0])  # a stale handoff must not start it either
    control = cluster.create_vmi("control")
    cluster.launch(control, cluster.usable_vfs[1])
    eventually(lambda: cluster.phase("control") == "Running", what="the control VMI running")
    assert cluster.domain("pod-lost") is None
    assert cluster.phase("pod-lost") == "Failed"


def test_a_running_guest_whose_vmi_the_controller_failed_is_stopped_and_let_go(cluster: Cluster) -> None:
    """Its launcher pod is gone (the controller wrote Failed/PodDisappeared): the guest is shut
    down, the domain undefined and the finalizer removed, and the controller's Failed stays."""
    cluster.set_configmap_gates("QAT")
    cluster.start_agent()
    vmi = cluster.create_vmi("orphaned", grace=2)
    cluster.launch(vmi, cluster.usable_vfs[0])
    eventually(lambda: cluster.phase("orphaned") == "Running", what="Running")
    assert cluster.has_finalizer("orphaned")
    message = "its launcher pod disappeared while the VMI was Running; the node's agent stops the guest"
    body = cluster.vmi("orphaned")
    assert body is not None
    body["status"] = {
        **body["status"],
        "phase": "Failed",
        "reason": "PodDisappeared",
        "conditions": [{"type": "Ready", "status": "False", "reason": "PodDisappeared", "message": message}],
    }
    cluster.server.put_object(body)  # what the controller writes
    control = cluster.create_vmi("control")
    cluster.launch(control, cluster.usable_vfs[1])

    eventually(lambda: cluster.domain("orphaned") is None, timeout=30, what="the domain undefined")
    eventually(lambda: not cluster.has_finalizer("orphaned"), what="the finalizer removed")
    after = cluster.vmi("orphaned")
    assert after is not None
    assert (after["status"]["phase"], after["status"]["reason"]) == ("Failed", "PodDisappeared")
    assert cluster.message("orphaned", "Ready") == message
    assert "ShuttingDown" in cluster.event_reasons(after["metadata"]["uid"])
    eventually(lambda: cluster.phase("control") == "Running", what="the control VMI running meanwhile")
    assert cluster.domain_running("control")


def test_a_vmi_moved_to_another_node_keeps_the_finalizer_that_nodes_agent_relies_on(cluster: Cluster) -> None:
    """The node label changed by hand: this node's agent lets its guest go as for a delete, but the
    finalizer is one name for every node, and the VMI's new node now holds its domain under it."""
    cluster.set_configmap_gates("QAT")
    node = cluster.start_agent()
    vmi = cluster.create_vmi("moved", grace=5)
    cluster.launch(vmi, cluster.usable_vfs[0])
    eventually(lambda: cluster.phase("moved") == "Running", what="Running")
    assert cluster.has_finalizer("moved")

    cluster.label_vmi("moved", "node02")
    eventually(lambda: cluster.domain("moved") is None, what="this node's domain undefined")
    assert node.wait_synced(30), "the agent did not finish its passes"
    assert cluster.has_finalizer("moved"), "this node removed the finalizer the VMI's new node relies on"
    deleted = cluster.vmi("moved")
    assert deleted is not None and deleted["metadata"]["labels"][NODE_LABEL] == "node02"
