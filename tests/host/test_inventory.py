"""Discovery of QAT PFs and VFs, and the inspector's per-pass cache."""

from __future__ import annotations

import shutil
from pathlib import Path

from handler.core.bdf import Bdf
from handler.core.permitted_devices import PermittedDevices
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.inspector import HostInspector
from handler.host.inventory import read_inventory
from handler.host.simulated_host import EscapingLink, SimulatedHost, SimulatedPf, build_simulated_host
from tests.host.trees import C62X_PF, GEN4_PF, NIC, build, c62x, gen4, nic

ANY = PermittedDevices()


def test_pfs_carry_their_sriov_and_gen4_state(tmp_path: Path) -> None:
    build(tmp_path, c62x(vfs=3), gen4(vfs=2, services="dc", state="up", total_vfs=16), extra_devices=(nic(),))
    inventory = read_inventory(tmp_path, ANY)
    c62x_pf, gen4_pf = inventory.pfs
    assert (c62x_pf.bdf, c62x_pf.family.name, c62x_pf.driver) == (C62X_PF, "C62x", "c6xx")
    assert (c62x_pf.numvfs, c62x_pf.totalvfs, c62x_pf.services, c62x_pf.state) == (3, 16, None, None)
    assert (gen4_pf.bdf, gen4_pf.driver, gen4_pf.numvfs, gen4_pf.services, gen4_pf.state) == (
        GEN4_PF,
        "4xxx",
        2,
        "dc",
        "up",
    )


def test_vfs_are_listed_with_their_pf_and_non_qat_devices_are_not(tmp_path: Path) -> None:
    vfs = build(tmp_path, gen4(vfs=2), c62x(vfs=2, vf_driver="c6xxvf"), extra_devices=(nic(),))
    inventory = read_inventory(tmp_path, ANY)
    assert tuple(vf.bdf for vf in inventory.vfs) == tuple(sorted(vfs))
    assert NIC not in {vf.bdf for vf in inventory.vfs}
    assert [vf.driver for vf in inventory.vfs_of(C62X_PF)] == ["c6xxvf", "c6xxvf"]
    assert [vf.bdf for vf in inventory.vfs_of(GEN4_PF)] == list(vfs[:2])


def test_an_escaping_device_entry_is_reported_and_skipped(tmp_path: Path) -> None:
    vfs = build(tmp_path, c62x(vfs=2), escaping_links=(EscapingLink(Bdf(0, 0x3D, 1, 1), "", "/sys"),))
    inventory = read_inventory(tmp_path, ANY)
    assert [vf.bdf for vf in inventory.vfs] == [vfs[0]]
    assert inventory.escapes == (f"/sys/bus/pci/devices/{vfs[1]} -> /sys",)


def test_usable_vfs_leave_out_refused_ones(tmp_path: Path) -> None:
    vfs = build(tmp_path, gen4(vfs=4, vf_drivers=((1, "4xxxvf"), (2, None))))
    assert HostInspector(FreshDeviceChecks(tmp_path, ANY)).usable_vfs("qat.intel.com/generic") == (vfs[0], vfs[3])
    assert HostInspector(FreshDeviceChecks(tmp_path, ANY)).usable_vfs("example.com/other") == ()


def test_reads_are_cached_until_refresh(tmp_path: Path) -> None:
    vf = build(tmp_path, gen4(vfs=1))[0]
    inspector = HostInspector(FreshDeviceChecks(tmp_path, ANY))
    assert inspector.check(vf) is None
    driver = tmp_path / f"sys/bus/pci/devices/{vf}/driver"
    driver.unlink()
    driver.symlink_to("../../../bus/pci/drivers/4xxxvf")
    assert inspector.check(vf) is None, "within one pass the first read stands"
    inspector.refresh()
    refused = inspector.check(vf)
    assert refused is not None and "is bound to host driver 4xxxvf" in refused.problem
    assert inspector.usable_vfs() == ()


def test_a_snapshot_of_1024_vfs_then_1000_checks_read_sysfs_once(ram_path: Path) -> None:
    """After one scan, checks are answered from the pass's cache: with the tree gone they still
    pass, and only a refresh sees it. (How fast is measured by bench/, not here.)"""
    pfs = tuple(SimulatedPf("4xxx", Bdf(0, 0x40 + i, 0, 0), 16) for i in range(64))
    vfs = build_simulated_host(ram_path, SimulatedHost(pfs))
    inspector = HostInspector(FreshDeviceChecks(ram_path, ANY))
    assert len(inspector.snapshot().vfs) == 1024
    shutil.rmtree(ram_path / "sys")
    assert [inspector.check(vf, "qat.intel.com/generic") for vf in vfs[:1000]] == [None] * 1000
    inspector.refresh()
    refused = inspector.check(vfs[0], "qat.intel.com/generic")
    assert refused is not None and "does not exist" in refused.problem, refused
