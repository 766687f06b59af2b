"""A Failed the controller wrote for a lost launcher pod stays, whatever the agent writes after."""

from __future__ import annotations

from typing import Any

from handler.core.kube_status import status_body
from handler.core.launcher_failure import failed_by_controller
from handler.core.status import Phase, VMIStatus, ready

LOST = "its launcher pod disappeared while the VMI was Running; the node's agent stops the guest"


def served(phase: str = "Failed", reason: str = "PodDisappeared") -> dict[str, Any]:
    return {
        "phase": phase,
        "reason": reason,
        "conditions": [{"type": "Ready", "status": "False", "reason": reason, "message": LOST}],
    }


def test_only_the_controllers_launcher_failures_count() -> None:
    assert failed_by_controller(served())
    assert failed_by_controller(served(reason="PodFailed"))
    assert not failed_by_controller(served(reason="Destroyed")), "the agent's own Failed"
    assert not failed_by_controller(served(phase="Running"))
    assert not failed_by_controller(None)


def test_the_agents_writes_keep_the_phase_reason_and_ready_condition() -> None:
    shutting = VMIStatus(Phase.RUNNING, "default_vmi", (ready(False, "ShuttingDown", "ACPI pressed"),))
    body = status_body(shutting, "node01", "now", served())
    assert (body["phase"], body["reason"]) == ("Failed", "PodDisappeared")
    (condition,) = body["conditions"]
    assert (condition["reason"], condition["message"]) == ("PodDisappeared", LOST)
    done = VMIStatus(Phase.SUCCEEDED, "default_vmi", (ready(False, "Stopped", "powered off"),))
    assert status_body(done, "node01", "now", served())["phase"] == "Failed"


def test_any_other_status_is_the_agents_to_write() -> None:
    running = VMIStatus(Phase.RUNNING, "default_vmi", (ready(True),))
    for previous in (served(reason="Destroyed"), served(phase="Scheduled"), None):
        body = status_body(running, "node01", "now", previous)
        assert body["phase"] == "Running" and body["conditions"][0]["status"] == "True"
