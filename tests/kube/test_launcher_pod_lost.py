"""A Running VMI whose launcher pod is force-deleted or SIGKILLed: the controller fails it (as
KubeVirt does), and the node's agent stops the guest, undefines the domain, releases the VF
and drops its finalizer, while the VMI stays Failed with the controller's reason.

Real processes on the fake cluster, as in test_control_plane_e2e: `qat-handler controller`,
`qat-handler agent --kubernetes` on test:///default, the fake kubelet running each pod's real
`qat-handler launcher`, and `kubectl` for what a user types. The node has one VF, so the next
VMI reaching Running on it proves the agent let the first one's VF go.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handler.core.kube_status import FINALIZER
from tests.kube.test_control_plane_e2e import KUBECTL, NODE, Stack, controller_and_agent, eventually

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with controller_and_agent(tmp_path, vfs=1) as running:
        yield running


def agent_lines(stack: Stack, vmi: str) -> list[dict[str, Any]]:
    lines = []
    for text in (stack.work / "agent.log").read_text().splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if line.get("vmi") == f"default/{vmi}":
            lines.append(line)
    return lines


def let_go(stack: Stack, name: str, reason: str, phrase: str) -> None:
    """What a user sees once the pod is lost: Failed with the controller's reason and Event,
    and the agent done with the guest (domain undefined, then the finalizer removed)."""
    eventually(f"{name} Failed", lambda: stack.phase(name) == "Failed")
    eventually(
        f"{name}'s finalizer removed", lambda: FINALIZER not in (stack.vmi(name)["metadata"].get("finalizers") or [])
    )
    status = stack.vmi(name)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", reason), status
    (ready,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert phrase in ready["message"] and "the node's agent stops the guest" in ready["message"]
    events = stack.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
    assert events.returncode == 0, events.stderr
    reasons = {(e["reason"], e["type"]) for e in json.loads(events.stdout)["items"]}
    assert (reason, "Warning") in reasons, reasons
    # The controller's verdict is the only warning: a start's wait for its launcher is Normal, and the
    # agent does not call a running guest's vanished pod a launcher that "has not arrived".
    assert {r for r, kind in reasons if kind == "Warning"} == {reason}, reasons
    said = [line["event"] for line in agent_lines(stack, name)]
    assert "domain undefined" in said and "VMI forgotten" in said, said
    assert said.index("domain undefined") < said.index("VMI forgotten")
    assert stack.kubectl("get", "vmi", name).returncode == 0, "the VMI stays, Failed, for the user to see"


def test_a_force_deleted_launcher_pod_fails_the_vmi_and_frees_its_vf(stack: Stack) -> None:
    assert stack.apply("lost").returncode == 0
    vf = stack.running_with_vf("lost")
    (pod,) = stack.pods_of("lost")
    deleted = stack.kubectl("delete", "pod", pod["metadata"]["name"], "--grace-period=0", "--force")
    assert deleted.returncode == 0, deleted.stderr

    let_go(stack, "lost", "PodDisappeared", "its launcher pod disappeared while the VMI was Running")
    assert stack.pods_of("lost") == [], "no new pod for a Failed VMI"
    # The node's only VF: the next VMI gets it only if the agent let the first domain's claim go.
    assert stack.apply("next").returncode == 0
    assert stack.running_with_vf("next") == vf
    assert stack.phase("lost") == "Failed", "final stays final"


def test_a_sigkilled_launcher_fails_the_vmi_with_its_exit_code(stack: Stack) -> None:
    assert stack.apply("killed").returncode == 0
    vf = stack.running_with_vf("killed")
    (pod,) = stack.pods_of("killed")
    run = stack.cluster.node(NODE).kubelet.run_of(pod["metadata"]["uid"])
    assert run is not None
    for process in run.processes.values():
        process.send_signal(signal.SIGKILL)

    let_go(stack, "killed", "PodFailed", "exited with code 137")
    assert stack.apply("after").returncode == 0
    assert stack.running_with_vf("after") == vf
