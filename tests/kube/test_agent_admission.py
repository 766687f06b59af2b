"""What must hold before the agent starts a VMI's guest: the QAT feature gate, and a
handoff that really comes from the VMI's own launcher pod."""

from __future__ import annotations

import pytest

from handler.core.feature_gates import GATE_OFF_MESSAGE
from handler.core.kube_status import DEVICES_ANNOTATION
from tests.kube.agent_harness import Cluster, eventually


@pytest.mark.parametrize("where", ["configmap", "kubevirt-cr"])
def test_gate_off_blocks_qat_vmis_until_it_is_turned_on(cluster: Cluster, where: str) -> None:
    cluster.set_configmap_gates("LiveMigration,Snapshot")
    if where == "kubevirt-cr":
        cluster.set_kubevirt_gates(["LiveMigration"])
    node = cluster.start_agent()
    vmi = cluster.create_vmi("gated")
    cluster.launch(vmi, cluster.usable_vfs[0])

    eventually(lambda: cluster.synchronized_reason("gated") == "FeatureGateDisabled", what="FeatureGateDisabled")
    assert cluster.message("gated", "Synchronized").startswith(GATE_OFF_MESSAGE)
    assert GATE_OFF_MESSAGE == "QAT feature gate is not enabled in kubevirt-config"
    assert cluster.phase("gated") == "Scheduled"
    assert cluster.domain("gated") is None
    assert not cluster.has_finalizer("gated")
    warning = eventually(lambda: cluster.events_with(vmi["metadata"]["uid"], "FeatureGateDisabled"))
    assert warning[0]["type"] == "Warning"

    if where == "configmap":
        cluster.set_configmap_gates("LiveMigration,QAT,Snapshot")
    else:
        cluster.set_kubevirt_gates(["LiveMigration", "QAT"])
    eventually(lambda: cluster.phase("gated") == "Running", what="Running once the gate is on")
    assert cluster.domain_running("gated")
    assert cluster.synchronized_reason("gated") is None
    assert node in cluster.nodes, "the same agent, never restarted"


def test_vmi_without_qats_needs_no_gate(cluster: Cluster) -> None:
    cluster.start_agent()
    vmi = cluster.create_vmi("plain", qats=0)
    cluster.create_pod(vmi)
    eventually(lambda: cluster.synchronized_reason("plain") == "WaitingForLauncher", what="WaitingForLauncher")


def test_forged_handoff_in_another_pods_slot_is_refused(cluster: Cluster) -> None:
    cluster.set_configmap_gates("QAT")
    cluster.start_agent()
    victim = cluster.create_vmi("victim")
    intruder = cluster.create_vmi("intruder")
    intruder_pod = cluster.create_pod(intruder)
    victim_pod = cluster.create_pod(victim)
    stolen = cluster.usable_vfs[0]
    # Pod B (the intruder's launcher) writes, in its own slot, a handoff that speaks for VMI A.
    cluster.write_handoff(intruder_pod, victim, {"QAT0": str(stolen)})

    eventually(lambda: cluster.synchronized_reason("victim") == "HandoffRejected", what="HandoffRejected")
    message = cluster.message("victim", "Synchronized")
    assert f"slot {intruder_pod}" in message and "forged" in message and "fix:" in message
    assert cluster.domain("victim") is None
    assert cluster.phase("victim") == "Scheduled"

    genuine = cluster.usable_vfs[1]
    cluster.write_handoff(victim_pod, victim, {"QAT0": str(genuine)})
    eventually(lambda: cluster.phase("victim") == "Running", what="Running from its own slot")
    xml = cluster.must_domain("victim").XMLDesc(0)
    assert f"bus='0x{genuine.bus:02x}' slot='0x{genuine.slot:02x}' function='0x{genuine.function:x}'" in xml
    assert cluster.annotation("victim", DEVICES_ANNOTATION) == f"qat1=qat.intel.com/generic@{genuine}"


def test_handoff_naming_another_pod_is_refused(cluster: Cluster) -> None:
    """The slot's name is the pod UID kubelet made; a handoff claiming any other pod is refused."""
    cluster.set_configmap_gates("QAT")
    cluster.start_agent()
    vmi = cluster.create_vmi("mismatch")
    real_pod = cluster.create_pod(vmi)
    other_pod = cluster.create_pod(cluster.create_vmi("bystander"))
    cluster.write_handoff(real_pod, vmi, {"QAT0": str(cluster.usable_vfs[0])}, claimed_pod_uid=other_pod)

    eventually(lambda: cluster.synchronized_reason("mismatch") == "HandoffRejected", what="HandoffRejected")
    message = cluster.message("mismatch", "Synchronized")
    assert f"slot {real_pod}" in message and other_pod in message
    assert cluster.domain("mismatch") is None
