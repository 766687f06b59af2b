"""A VMI deleted before its guest ever ran: its launcher pod ends at once and gives its VF back.

Such a VMI (here one whose multus network names a NetworkAttachmentDefinition that does not
exist, so the node refuses it) never got the agent's finalizer, so `kubectl delete vmi`
removes it at once, and the pod's SIGTERM reaches a launcher whose VMI the agent no longer
has. The launcher holds its pod until the agent says the guest is off; with no VMI there was
no status to say it with, and the pod held the VF for the VMI's grace + 15 s.

Real processes on the fake cluster, as in test_launcher_pod_lost: the controller, the agent on
test:///default, the fake kubelet running the real launcher, and kubectl. The grace is 600 s,
so a launcher that waited it out would hold its pod far past every wait below.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.core.handoff import HANDOFF_FILE, REPORT_FILE, Handoff, handoff_to_json
from handler.core.kube_status import FINALIZER
from handler.core.vmi import NODE_LABEL
from tests.fakekube.objects import vmi_manifest
from tests.kube.test_control_plane_e2e import KUBECTL, NODE, Stack, controller_and_agent, eventually, start_agent

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

GRACE = 600


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with controller_and_agent(tmp_path, vfs=1) as running:
        yield running


def refused_vmi(name: str) -> str:
    """One QAT VF, a long grace, and a NIC on a network this cluster does not have."""
    grace = "terminationGracePeriodSeconds:"
    manifest = vmi_manifest(name, "qat1").replace(f"{grace} 5", f"{grace} {GRACE}")
    return (
        manifest.replace(
            "    devices:\n",
            "    devices:\n      interfaces:\n        - {name: storage, bridge: {}}\n",
        )
        + "  networks:\n    - {name: storage, multus: {networkName: no-such-network}}\n"
    )


def synchronized_reason(stack: Stack, name: str) -> str:
    conditions = (stack.vmi(name).get("status") or {}).get("conditions") or []
    return next((str(c.get("reason")) for c in conditions if c.get("type") == "Synchronized"), "")


def test_deleting_a_vmi_whose_guest_never_ran_ends_its_pod_and_frees_its_vf(stack: Stack) -> None:
    applied = stack.kubectl("apply", "-f", "-", stdin=refused_vmi("never-ran"))
    assert applied.returncode == 0, applied.stderr
    eventually("the node's refusal", lambda: synchronized_reason(stack, "never-ran") == "NetworkUnavailable")
    (pod,) = stack.pods_of("never-ran")
    assert stack.cluster.node(NODE).free_vfs() == (), "the refused VMI's pod holds the node's only VF"

    deleted = stack.kubectl("delete", "vmi", "never-ran")
    assert deleted.returncode == 0, deleted.stderr
    eventually("the launcher pod gone", lambda: not stack.pods_of("never-ran"))
    log = stack.cluster.node(NODE).kubelet.log_of(pod["metadata"]["uid"], "launcher")
    assert "guest is off" in log and "is gone and no guest of it runs on this node" in log, log
    assert "did not report the guest off in time" not in log, log

    # The VF is back: the next VMI runs on it.
    assert stack.apply("next").returncode == 0
    assert stack.running_with_vf("next")
    assert '"launcher of a gone VMI released"' in (stack.work / "agent.log").read_text()


def test_a_stop_asked_while_the_agent_was_away_is_answered_when_it_is_back(stack: Stack) -> None:
    applied = stack.kubectl("apply", "-f", "-", stdin=refused_vmi("asked-meanwhile"))
    assert applied.returncode == 0, applied.stderr
    eventually("the node's refusal", lambda: synchronized_reason(stack, "asked-meanwhile") == "NetworkUnavailable")
    (pod,) = stack.pods_of("asked-meanwhile")
    agent = stack.processes["agent"]
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0

    assert stack.kubectl("delete", "vmi", "asked-meanwhile").returncode == 0
    kubelet = stack.cluster.node(NODE).kubelet
    eventually(
        "the launcher asking to stop",
        lambda: "asked the agent to shut the guest down" in kubelet.log_of(pod["metadata"]["uid"], "launcher"),
    )
    start_agent(stack, "agent-again")
    eventually("the launcher pod gone", lambda: not stack.pods_of("asked-meanwhile"))
    log = kubelet.log_of(pod["metadata"]["uid"], "launcher")
    assert "is gone and no guest of it runs on this node" in log, log


def test_a_forged_stop_request_never_makes_the_agent_act_on_another_vmi(stack: Stack) -> None:
    """Answering a gone VMI's launcher means a pass over the VMI key its handoff names, and a pass
    over a key the node does not hold lets go of that VMI's finalizer. So a stop request counts only
    where the API's pod vouches for it: here a slot that no pod backs names a VMI on another node."""
    victim = stack.cluster.server.put_object(
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {
                "name": "victim",
                "namespace": "default",
                "labels": {NODE_LABEL: "node02"},
                "finalizers": [FINALIZER],
            },
            "spec": {"domain": {"memory": {"guest": "64Mi"}}},
            "status": {"phase": "Succeeded", "nodeName": "node02"},  # final: the controller leaves it be
        }
    )
    forged = Handoff("default", "victim", victim["metadata"]["uid"], "no-such-pod", (), stop_requested=True)
    slot = stack.cluster.node(NODE).run_dir / "pods" / "no-such-pod"
    slot.mkdir(parents=True)
    (slot / "next").write_text(json.dumps(handoff_to_json(forged)))
    (slot / "next").rename(slot / HANDOFF_FILE)
    # A legitimate stop request after it, answered: the agent has read the slots by then.
    applied = stack.kubectl("apply", "-f", "-", stdin=refused_vmi("after"))
    assert applied.returncode == 0, applied.stderr
    eventually("the node's refusal", lambda: synchronized_reason(stack, "after") == "NetworkUnavailable")
    assert stack.kubectl("delete", "vmi", "after").returncode == 0
    eventually("the legitimate launcher answered", lambda: not stack.pods_of("after"))
    assert stack.vmi("victim")["metadata"]["finalizers"] == [FINALIZER]
    assert not (slot / REPORT_FILE).exists(), "a slot no pod backs was answered"
