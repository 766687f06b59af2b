"""Which launcher stop requests the agent may answer once their VMI is gone: only a slot's own,
only where the API's pod vouches for the VMI it names, and each once."""

from __future__ import annotations

import json
from pathlib import Path

from handler.core.handoff import HANDOFF_FILE, AgentReport, Handoff, handoff_to_json
from handler.core.launcher_pod import ID_LABEL
from handler.kube.handoff_slots import HandoffSlots
from handler.kube.launcher_pods import CREATED_BY_LABEL, vouches_for

VMI_UID = "00000000-0000-4000-8000-000000000007"


def test_only_a_slots_own_stop_request_counts(tmp_path: Path) -> None:
    """The agent answers a stop request in the slot it came from. A handoff naming another pod
    (a pod can write anything into its own slot) is not a stop request of that pod, so the
    agent never tells another pod's launcher that its guest is off."""
    slots = HandoffSlots(tmp_path)
    slots.scan()
    for slot, claimed in (("pod-a", "pod-a"), ("pod-b", "pod-victim"), ("pod-c", "pod-c")):
        (tmp_path / "pods" / slot).mkdir()
        stopping = Handoff("ns", slot, VMI_UID, claimed, (), stop_requested=slot != "pod-c")
        (tmp_path / "pods" / slot / HANDOFF_FILE).write_text(json.dumps(handoff_to_json(stopping)))
    slots.scan()
    assert [(slot, h.name) for slot, h in slots.stopping()] == [("pod-a", "pod-a")]


def test_a_report_saying_off_is_known_as_told(tmp_path: Path) -> None:
    slots = HandoffSlots(tmp_path)
    slots.scan()
    (tmp_path / "pods" / "pod-a").mkdir()
    assert not slots.told_off("pod-a", VMI_UID)
    slots.write_report("pod-a", AgentReport(VMI_UID, "Running", guest_off=False))
    assert not slots.told_off("pod-a", VMI_UID)
    slots.write_report("pod-a", AgentReport(VMI_UID, "", guest_off=True, message="gone"))
    assert slots.told_off("pod-a", VMI_UID) and not slots.told_off("pod-a", "another-uid")


def test_a_stop_request_counts_only_where_its_pod_vouches_for_the_vmi_it_names() -> None:
    """Once its VMI is gone, the agent acts on the VMI key a stop request names, so the pod must be
    the one the API knows as that VMI's launcher, in that namespace, by uid and by name."""
    request = Handoff("ns", "vm", VMI_UID, "pod-a", (), stop_requested=True)
    labels = {CREATED_BY_LABEL: VMI_UID, ID_LABEL: "vm"}
    pod = {"metadata": {"uid": "pod-a", "namespace": "ns", "labels": labels}}
    assert vouches_for(pod, request)
    assert not vouches_for(None, request)
    assert not vouches_for({"metadata": {**pod["metadata"], "namespace": "other"}}, request)
    for label, value in ((CREATED_BY_LABEL, "another-uid"), (ID_LABEL, "victim")):
        assert not vouches_for({"metadata": {**pod["metadata"], "labels": {**labels, label: value}}}, request)
