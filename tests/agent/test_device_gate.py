"""The device gate: one VF never reaches two guests, and a VF coming free requeues who waits."""

from __future__ import annotations

from handler.agent.device_gate import DeviceGate
from handler.core.bdf import Bdf
from handler.core.desired import Desired, Intent
from handler.core.device_env import AssignedDevice
from handler.core.domain_state import ObservedDomain, Power

VF = Bdf(0, 0x3D, 1, 1)


class NoForeignDomains:
    def foreign_devices(self, owner: str) -> dict[Bdf, str]:
        return {}


def wants(key: str, bdf: Bdf = VF) -> Desired:
    return Desired(key, Intent.RUN, None, (AssignedDevice("qat0", "qat.intel.com/generic", bdf, "QAT0..QATn"),))


def gate(requeued: list[str]) -> DeviceGate:
    return DeviceGate(NoForeignDomains(), "", requeued.append)  # type: ignore[arg-type]


def test_a_vf_held_by_one_vmi_is_refused_to_another_until_released() -> None:
    requeued: list[str] = []
    devices = gate(requeued)
    assert devices.judge(wants("ns/a"), None).blocked is None
    refused = devices.judge(wants("ns/b"), None).blocked
    assert refused is not None and refused.reason == "DeviceRejected" and "VMI ns/a" in refused.problem
    assert devices.waiting() == ["ns/b"]
    devices.release("ns/a")
    assert requeued == ["ns/b"], "the waiting VMI is looked at again at once"
    assert devices.judge(wants("ns/b"), None).blocked is None
    assert devices.waiting() == [] and devices.claims.holder(VF) == "ns/b"


def test_releasing_a_vmi_that_held_nothing_requeues_no_one() -> None:
    requeued: list[str] = []
    devices = gate(requeued)
    devices.judge(wants("ns/a"), None)
    devices.judge(wants("ns/b"), None)
    devices.release("ns/c")
    assert requeued == []


def test_a_running_guest_is_not_judged_again() -> None:
    devices = gate([])
    devices.judge(wants("ns/a"), None)
    running = ObservedDomain("ns_b", "uuid", Power.RUNNING, None, None)
    assert devices.judge(wants("ns/b"), running).blocked is None
