"""The device rules on generated hosts: each refusal names the BDF, the rule and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

from handler.core.bdf import Bdf
from handler.core.device_rules import DeviceRule, Violation, check_device, host_rules
from handler.core.pci_function import HostFacts, PciFunction
from handler.core.permitted_devices import PermittedDevices
from handler.core.refusal import Refusal
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.inspector import HostInspector
from handler.host.simulated_host import EscapingLink, SimulatedDevice
from tests.host.trees import C62X_PF, GEN4_PF, NIC, bridge, build, c62x, gen4, nic

ANY = PermittedDevices()


def refusal(root: Path, bdf: Bdf, resource: str | None = None) -> Refusal:
    found = HostInspector(FreshDeviceChecks(root, ANY)).check(bdf, resource)
    assert found is not None, f"{bdf} was expected to be refused"
    assert found.reason == "DeviceRejected" and found.subject == str(bdf)
    return found


def test_c62x_and_gen4_vfs_on_vfio_pci_are_usable(tmp_path: Path) -> None:
    vfs = build(tmp_path, c62x(vfs=3), gen4(vfs=3))
    inspector = HostInspector(FreshDeviceChecks(tmp_path, ANY))
    assert [inspector.check(vf, "qat.intel.com/generic") for vf in vfs] == [None] * 6
    assert inspector.usable_vfs("qat.intel.com/cy") == vfs


def test_a_missing_device_is_refused_by_the_exists_rule(tmp_path: Path) -> None:
    build(tmp_path, c62x(vfs=1))
    found = refusal(tmp_path, Bdf(0, 0x3D, 7, 7))
    assert found.line().startswith("0000:3d:07.7 does not exist (/sys/bus/pci/devices/0000:3d:07.7 is missing)")
    assert "(rule exists); fix:" in found.line()
    assert "sriov_numvfs" in found.fix


def test_a_group_shared_with_a_host_driver_is_not_viable(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=1), extra_devices=(nic(share_group_with=Bdf(0, 0x3D, 1, 0)),))[0]
    found = refusal(tmp_path, vf)
    assert found.problem.startswith("shares IOMMU group 1 with 0000:3d:00.1 (i40e)")
    assert found.problem.endswith("(rule iommu-group-viable)")
    assert "unbind 0000:3d:00.1 (i40e)" in found.fix


def test_a_group_shared_with_a_bridge_or_a_driverless_device_is_viable(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=1), extra_devices=(nic(None, Bdf(0, 0x3D, 1, 0)), bridge(NIC)))[0]
    assert HostInspector(FreshDeviceChecks(tmp_path, ANY)).check(vf) is None


def test_a_pre_gen4_vf_on_its_host_driver_is_blocked_by_the_denylist(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=1, vf_driver="c6xxvf"))[0]
    found = refusal(tmp_path, vf)
    assert found.problem == (
        "is bound to host driver c6xxvf; the kernel's vfio-pci denylist blocks C62x VFs (rule vfio-bound)"
    )
    assert found.fix.startswith("boot with vfio-pci.disable_denylist=1, then echo vfio-pci >")
    assert f"/sys/bus/pci/devices/{vf}/driver_override" in found.fix


def test_once_the_denylist_is_disabled_only_the_binding_is_asked_for(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=1, vf_driver=None), denylist_disabled=True)[0]
    found = refusal(tmp_path, vf)
    assert found.problem == "is bound to no driver, not vfio-pci (rule vfio-bound)"
    assert "disable_denylist" not in found.fix and "unbind" not in found.fix


def test_a_gen4_vf_on_its_host_driver_needs_no_denylist_change(tmp_path: Path) -> None:
    vf = build(tmp_path, gen4(vfs=1, vf_driver="4xxxvf"))[0]
    found = refusal(tmp_path, vf)
    assert found.problem == "is bound to host driver 4xxxvf, not vfio-pci (rule vfio-bound)"
    assert found.fix == (
        f"echo vfio-pci > /sys/bus/pci/devices/{vf}/driver_override, unbind it from 4xxxvf,"
        f" then echo {vf} > /sys/bus/pci/drivers_probe"
    )


def test_without_the_vfio_pci_module_the_fix_loads_it(tmp_path: Path) -> None:
    vf = build(tmp_path, gen4(vfs=1, vf_driver=None), vfio_pci_loaded=False)[0]
    assert refusal(tmp_path, vf).fix.startswith("modprobe vfio-pci, then echo vfio-pci >")


def test_without_an_iommu_the_boot_options_are_the_fix(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=1, vf_driver="c6xxvf"), iommu=False)[0]
    found = refusal(tmp_path, vf)
    assert found.problem == ("cannot use vfio: the IOMMU is off (/sys/kernel/iommu_groups is empty) (rule iommu-on)")
    assert "intel_iommu=on" in found.fix and "iommu=pt" in found.fix


def test_a_missing_dev_vfio_node_is_refused(tmp_path: Path) -> None:
    vf = build(tmp_path, gen4(vfs=1))[0]
    (tmp_path / "dev/vfio/1").unlink()
    assert refusal(tmp_path, vf).problem == "has no /dev/vfio/1 node (rule iommu-group-viable)"


def test_a_non_qat_device_is_not_permitted(tmp_path: Path) -> None:
    build(tmp_path, c62x(vfs=1), extra_devices=(nic(),))
    found = refusal(tmp_path, NIC)
    assert found.problem == "is 8086:1572, which is not in the QAT VF table (rule permitted)"
    assert "pciVendorSelector: 8086:1572" in found.fix


def test_a_qat_pf_is_named_as_such(tmp_path: Path) -> None:
    build(tmp_path, c62x(vfs=1))
    assert refusal(tmp_path, C62X_PF).problem == "is a C62x QAT physical function, not a VF (rule permitted)"


def test_the_builtin_table_serves_only_qat_resource_names(tmp_path: Path) -> None:
    vf = build(tmp_path, gen4(vfs=1))[0]
    found = refusal(tmp_path, vf, "example.com/nic")
    assert found.problem == ("is 8086:4941, permitted for qat.intel.com/* but not for example.com/nic (rule permitted)")


def test_a_link_out_of_the_host_root_is_a_refusal(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=1), escaping_links=(EscapingLink(Bdf(0, 0x3D, 1, 0), "iommu_group", "/"),))[0]
    found = refusal(tmp_path, vf)
    assert found.problem == (
        "has a link leading outside the host root"
        f" (/sys/devices/pci0000:3d/{vf}/iommu_group -> /) (rule inside-host-root)"
    )
    assert "--host-root" in found.fix


def test_the_first_failing_rule_wins_in_the_listed_order() -> None:
    facts = HostFacts(iommu_enabled=False, vfio_pci_loaded=False, denylist_disabled=None)
    vf = PciFunction(Bdf(0, 0x3D, 1, 0), facts, present=True, vendor=0x8086, device=0x37C9, driver="c6xxvf")
    rules = host_rules(ANY)
    assert [rule.name for rule in rules] == [
        "exists",
        "inside-host-root",
        "permitted",
        "iommu-on",
        "vfio-bound",
        "iommu-group-viable",
    ]
    found = check_device(vf, None, rules)
    assert found is not None and found.problem.endswith("(rule iommu-on)")
    found = check_device(vf, None, [r for r in rules if r.name != "iommu-on"])
    assert found is not None and found.problem.endswith("(rule vfio-bound)")


def test_extra_rules_run_last_with_their_own_reason(tmp_path: Path) -> None:
    vfs = build(tmp_path, gen4(vfs=2))
    in_use = DeviceRule(
        "not-in-use",
        lambda fn, _resource: Violation("is in use by domain other", "wait") if fn.bdf == vfs[0] else None,
        reason="DeviceInUse",
    )
    inspector = HostInspector(FreshDeviceChecks(tmp_path, ANY))
    found = inspector.check(vfs[0], "qat.intel.com/generic", extra_rules=(in_use,))
    assert found == Refusal("DeviceInUse", str(vfs[0]), "is in use by domain other (rule not-in-use)", "wait")
    assert inspector.usable_vfs(extra_rules=(in_use,)) == vfs[1:]
    assert inspector.check(GEN4_PF, extra_rules=(in_use,)) is not None


def test_a_device_that_reads_without_ids_is_refused_plainly() -> None:
    facts = HostFacts(iommu_enabled=True, vfio_pci_loaded=True, denylist_disabled=False)
    found = check_device(PciFunction(Bdf(0, 1, 0, 0), facts, present=True), None, host_rules(ANY))
    assert found is not None and found.problem == "has unreadable vendor and device IDs (rule permitted)"


def test_an_operator_device_in_another_domain_is_checked_too(tmp_path: Path) -> None:
    edu = SimulatedDevice(Bdf(0, 0, 3, 0), 0x11E8, 0x00FF00, "vfio-pci", vendor=0x1234)
    build(tmp_path, extra_devices=(edu,))
    found = refusal(tmp_path, edu.bdf)
    assert found.problem == "is 1234:11e8, which is not in the QAT VF table (rule permitted)"


def test_a_vf_whose_group_directory_is_missing_is_refused(tmp_path: Path) -> None:
    vfs = build(tmp_path, c62x(vfs=2))
    shutil.rmtree(tmp_path / "sys/kernel/iommu_groups/1")  # the first VF's; the second's is still there
    assert refusal(tmp_path, vfs[0]).problem == "has no IOMMU group (rule iommu-group-viable)"
    assert HostInspector(FreshDeviceChecks(tmp_path, ANY)).check(vfs[1], None) is None
    for group in (tmp_path / "sys/kernel/iommu_groups").iterdir():  # none left: links alone prove nothing
        shutil.rmtree(group)
    assert "the IOMMU is off" in refusal(tmp_path, vfs[1]).problem
