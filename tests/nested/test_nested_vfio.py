"""Real VFIO passthrough, end to end: the agent inside a nested guest passes a PCI device to its own guest.

L1 is a TCG guest with an emulated Intel IOMMU and QEMU's ``edu`` PCI device (1234:11e8);
it runs this checkout's ``qat-handler`` and the host's libvirtd. The agent is given edu
through a permitted-devices file and passes it to an L2 guest with a vfio ``<hostdev>``.
L2 lists its PCI functions and does edu's ID and liveness checks through the BAR, so the
MMIO really goes L2 -> L1's vfio-pci -> L0's device. Layout: tests/support/nested/.

One L1 boot serves every stage, in this order:
  1. doctor --permitted-devices FILE -o json says the device is usable;
  2. with edu unbound from vfio-pci, a VMI naming it is refused with the driver and the fix;
  3. a VMI with no env file gets edu from the allocator; its L2 boots and sees the device;
  4. a second VMI whose env file names edu is refused as in use while the first runs;
  5. removing the first manifest shuts its guest down, undefines it and frees the device,
     and the waiting VMI then starts and its L2 sees the device too.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.support.nested.l1 import EDU_BDF, EDU_IDS
from tests.support.nested.node import (
    ENV_VAR,
    L2_MARKER,
    PERMITTED,
    RESOURCE,
    NestedNode,
    condition,
    domain_name,
    key_of,
    wait_for,
)

pytestmark = [pytest.mark.nested, pytest.mark.guest]

# Generous bounds that do not depend on load: on a 2-core machine L2 took 48-59 s to print its
# marker when quiet and 140-320 s at a load average of 6-45 (TCG inside TCG); libvirtd 5-37 s.
LIBVIRTD_TIMEOUT = 300.0
AGENT_TIMEOUT = 300.0
REFUSAL_TIMEOUT = 300.0
L2_TIMEOUT = 900.0
RELEASE_TIMEOUT = 600.0

EDU_ID = "0x010000ED"
"""edu's ID register: version 1.0, 0xed."""
EDU_LIVENESS = "0xEDCBA987"
"""What edu's liveness register reads after 0x12345678 was written: its bitwise inverse."""


def test_agent_passes_a_real_device_through_to_a_nested_guest(
    nested_node: NestedNode, timings: dict[str, float]
) -> None:
    node = nested_node
    timings["libvirtd ready"] = node.start_libvirtd(LIBVIRTD_TIMEOUT)
    group = node.bind_vfio()
    node.write_permitted()

    check_doctor(node, group)

    node.start_agent()
    wait_for("the agent's first sync", lambda: any(x.get("event") == "first sync done" for x in node.log_lines()),
             AGENT_TIMEOUT)  # fmt: skip

    check_unbound_device_is_refused(node)
    node.bind_vfio()

    allocated = boot_with_device(node, "edu-alloc", env_bdf=None, timings=timings)
    assert allocated["devices"] == [{"name": "edu", "resource": RESOURCE, "bdf": EDU_BDF, "source": "allocator"}], (
        allocated
    )
    assert set(node.allocations()) == {key_of("edu-alloc")}

    check_second_vmi_is_refused_as_in_use(node)
    check_release_starts_the_waiting_vmi(node, timings)

    removed = node.remove_vmi("edu-env")
    wait_for("edu-env to be undefined", lambda: domain_name("edu-env") not in node.domains(), RELEASE_TIMEOUT)
    node.stop_agent(AGENT_TIMEOUT)
    assert node.log_time("VFs released", "edu-env", removed) is None  # it came with an env file: nothing allocated
    assert node.driver() == "vfio-pci"  # managed='no': the agent never rebinds drivers


def check_doctor(node: NestedNode, group: str) -> None:
    rc, out = node.cli(f"doctor --domain-type qemu --permitted-devices {PERMITTED} -o json")
    report = _json_object(out)
    checks = {check["name"]: check for check in report["checks"]}
    assert rc == 0 and report["ok"] is True, out
    assert checks["IOMMU"]["ok"] and re.search(r"enabled, [1-9]\d* IOMMU groups", checks["IOMMU"]["detail"]), checks
    assert checks["vfio-pci module"]["ok"], checks
    device = checks[f"VF {EDU_BDF}"]
    assert device["ok"], device
    assert device["detail"] == f"{EDU_IDS}, driver vfio-pci, IOMMU group {group}, usable", device
    assert checks["usable VFs"]["ok"] and checks["usable VFs"]["detail"].startswith("1 of 1"), checks
    # What "usable" stands for, checked independently of the doctor:
    assert node.driver() == "vfio-pci"
    assert node.vfio_node(group), f"/dev/vfio/{group} is missing"


def check_unbound_device_is_refused(node: NestedNode) -> None:
    node.unbind()
    assert node.driver() == "none"
    node.put_vmi("edu-unbound", env_bdf=EDU_BDF)
    status = wait_for("edu-unbound to be refused", lambda: _refused(node, "edu-unbound"), REFUSAL_TIMEOUT)
    synced = condition(status, "Synchronized")
    assert synced is not None and synced["reason"] == "DeviceRejected", status
    assert synced["message"] == (
        f"{EDU_BDF} is bound to no driver, not vfio-pci (rule vfio-bound); fix: echo vfio-pci >"
        f" /sys/bus/pci/devices/{EDU_BDF}/driver_override, then echo {EDU_BDF} > /sys/bus/pci/drivers_probe"
    )
    assert domain_name("edu-unbound") not in node.domains()
    node.remove_vmi("edu-unbound")
    wait_for("edu-unbound to be forgotten", lambda: key_of("edu-unbound") not in node.status(), REFUSAL_TIMEOUT)


def boot_with_device(node: NestedNode, vmi: str, env_bdf: str | None, timings: dict[str, float]) -> dict[str, Any]:
    """Put a VMI asking for edu, wait for its L2 marker, check what L2 saw; returns its status."""
    how = "env file" if env_bdf else "allocator"
    written = node.put_vmi(vmi, env_bdf=env_bdf)
    status = wait_for(f"{vmi} to be Running", lambda: _phase(node, vmi, "Running"), L2_TIMEOUT)
    check_l2_sees_device(node, vmi, (written, f"define ({how}): manifest written"), timings)
    return status


def check_l2_sees_device(node: NestedNode, vmi: str, since: tuple[float, str], timings: dict[str, float]) -> None:
    """Wait for the L2 marker of ``vmi`` and check what L2 saw; record define, start and marker times
    (``since`` is the L1 time and name of the event the define time is counted from)."""

    def marker() -> tuple[float, str] | None:
        seen_at, lines = node.serial(vmi)
        return (seen_at, lines) if L2_MARKER in lines else None

    seen_at, lines = wait_for(lambda: f"the L2 marker of {vmi}; serial so far:\n{node.serial(vmi)[1]}", marker,
                              L2_TIMEOUT, poll=2.0)  # fmt: skip
    defined = node.log_time("domain defined", vmi, since[0])
    started = node.log_time("domain started", vmi, since[0])
    assert defined is not None and started is not None, "the agent logged no define/start"
    timings[f"{since[1]} -> domain defined"] = defined - since[0]
    timings[f"start {vmi}: defined -> QEMU running"] = started - defined
    timings[f"L2 marker {vmi}: started -> marker seen"] = seen_at - started

    assert re.search(r"^NEST-L2: pci \S+ 0x1234:0x11e8$", lines, re.M), lines
    edu = re.search(r"^NEST-L2: edu (\S+) bar0=(\S+) id=(\S+) liveness=(\S+)$", lines, re.M)
    assert edu is not None, lines
    assert (edu[3], edu[4]) == (EDU_ID, EDU_LIVENESS), lines
    assert re.search(rf"^{L2_MARKER} edu-devices=1 ok=1 ", lines, re.M), lines
    hostdevs = re.findall(r"<hostdev .*?</hostdev>", node.dumpxml(vmi), re.S)
    assert len(hostdevs) == 1, hostdevs
    assert re.match(r"<hostdev mode=.subsystem. type=.pci. managed=.no.>", hostdevs[0]), hostdevs
    source = re.search(r"<source>\s*(<address [^>]*>)", hostdevs[0])
    assert source and source[1] == "<address domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>", hostdevs


def check_second_vmi_is_refused_as_in_use(node: NestedNode) -> None:
    node.put_vmi("edu-env", env_bdf=EDU_BDF)
    status = wait_for("edu-env to be refused", lambda: _refused(node, "edu-env"), REFUSAL_TIMEOUT)
    synced = condition(status, "Synchronized")
    assert synced is not None and synced["reason"] == "DeviceRejected", status
    assert synced["message"] == (
        f"{EDU_BDF} is already assigned to VMI {key_of('edu-alloc')}; fix: give every VMI its own VFs"
    )
    # What the operator sees: one line, naming the device, the holder and the fix.
    rc, out = node.cli("status --state-dir /var/lib/nested/state -o json")
    rows = {f"{row['namespace']}/{row['name']}": row for row in _json_list(out)}
    assert rc == 0 and rows[key_of("edu-env")]["message"] == synced["message"], out
    assert rows[key_of("edu-alloc")]["phase"] == "Running", out
    assert domain_name("edu-env") not in node.domains()
    assert node.domains()[domain_name("edu-alloc")] == "running"


def check_release_starts_the_waiting_vmi(node: NestedNode, timings: dict[str, float]) -> None:
    removed = node.remove_vmi("edu-alloc")
    wait_for("edu-alloc to be undefined", lambda: domain_name("edu-alloc") not in node.domains(), RELEASE_TIMEOUT)
    released = wait_for("the allocator to release edu", lambda: node.log_time("VFs released", "edu-alloc", removed),
                        RELEASE_TIMEOUT)  # fmt: skip
    timings["release: manifest removed -> VF released"] = released - removed
    assert key_of("edu-alloc") not in node.allocations()
    _, lines = node.serial("edu-alloc")  # the log stays after the domain is gone
    assert "NEST-L2: power button, powering off" in lines, f"edu-alloc was not shut down through ACPI:\n{lines}"

    status = wait_for("edu-env to start", lambda: _phase(node, "edu-env", "Running"), L2_TIMEOUT)
    assert status["devices"] == [{"name": "edu", "resource": RESOURCE, "bdf": EDU_BDF, "source": ENV_VAR}], status
    check_l2_sees_device(node, "edu-env", (released, "define (env file, waiting): VF released"), timings)


def _phase(node: NestedNode, vmi: str, phase: str) -> dict[str, Any] | None:
    status = node.status().get(key_of(vmi))
    if status is None:
        return None
    assert status.get("phase") != "Failed", status
    return status if status.get("phase") == phase else None


def _refused(node: NestedNode, vmi: str) -> dict[str, Any] | None:
    status = node.status().get(key_of(vmi))
    synced = condition(status or {}, "Synchronized")
    return status if synced is not None and synced["status"] == "False" else None


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    assert isinstance(value, dict), f"not a JSON object: {text[:200]!r}"
    return value


def _json_list(text: str) -> list[dict[str, Any]]:
    value = json.loads(text)
    assert isinstance(value, list), f"not a JSON list: {text[:200]!r}"
    return value
