"""Reading one PCI function from sysfs: the snapshot, and links that leave the host root."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from handler.core.bdf import Bdf
from handler.core.pci_function import GroupMember
from handler.host.host_tree import HostTree
from handler.host.pci import PciReader, read_pci_function
from handler.host.simulated_host import EscapingLink
from tests.host.trees import C62X_PF, NIC, bridge, build, c62x, gen4, nic


def test_a_c62x_vf_on_vfio_pci(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=2))[0]
    fn = read_pci_function(tmp_path, vf)
    assert fn.present and fn.escapes == ()
    assert (fn.vendor, fn.device, fn.pci_class) == (0x8086, 0x37C9, 0x0B4000)
    assert fn.ids == "8086:37c9"
    assert fn.family is not None and fn.family.name == "C62x"
    assert fn.driver == "vfio-pci"
    assert fn.iommu_group == 1 and fn.vfio_node
    assert fn.physfn == C62X_PF
    assert fn.group_peers == ()
    assert fn.host.iommu_enabled and fn.host.vfio_pci_loaded and fn.host.denylist_disabled is False


def test_a_gen4_vf_on_its_host_driver_has_no_vfio_node(tmp_path: Path) -> None:
    vf = build(tmp_path, gen4(vfs=1, vf_driver="4xxxvf"))[0]
    fn = read_pci_function(tmp_path, vf)
    assert fn.driver == "4xxxvf" and fn.family is not None and fn.family.generation == 4
    assert fn.iommu_group == 1 and not fn.vfio_node


def test_group_peers_carry_their_driver_and_class(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=1), extra_devices=(nic(share_group_with=Bdf(0, 0x3D, 1, 0)), bridge(NIC)))[0]
    fn = read_pci_function(tmp_path, vf)
    peers = {peer.bdf: peer for peer in fn.group_peers}
    assert set(peers) == {NIC, Bdf(0, 0x3C, 0, 0)}
    assert peers[NIC] == GroupMember(NIC, 0x8086, 0x1572, 0x020000, "i40e")
    assert peers[NIC].blocks_vfio
    assert peers[Bdf(0, 0x3C, 0, 0)].is_bridge and not peers[Bdf(0, 0x3C, 0, 0)].blocks_vfio


def test_a_missing_device_is_absent_not_an_error(tmp_path: Path) -> None:
    build(tmp_path, c62x(vfs=1))
    fn = read_pci_function(tmp_path, Bdf(0, 0x99, 0, 0))
    assert not fn.present and fn.vendor is None


def test_an_empty_host_root_reads_as_nothing(tmp_path: Path) -> None:
    fn = read_pci_function(tmp_path / "nothing", Bdf(0, 0x3D, 1, 0))
    assert not fn.present
    assert not fn.host.iommu_enabled and not fn.host.vfio_pci_loaded and fn.host.denylist_disabled is None


def test_garbage_in_sysfs_files_reads_as_unknown(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=1))[0]
    (tmp_path / f"sys/bus/pci/devices/{vf}/vendor").write_text("banana\n")
    fn = read_pci_function(tmp_path, vf)
    assert fn.present and fn.vendor is None and fn.device == 0x37C9


def test_a_device_entry_leading_out_of_the_root_is_reported_not_followed(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=1), escaping_links=(EscapingLink(Bdf(0, 0x3D, 1, 0), "", "/sys"),))[0]
    fn = read_pci_function(tmp_path, vf)
    assert fn.present and fn.vendor is None
    assert fn.escapes == (f"/sys/bus/pci/devices/{vf} -> /sys",)


def test_a_driver_link_leading_out_is_reported_and_the_rest_still_read(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=1), escaping_links=(EscapingLink(Bdf(0, 0x3D, 1, 0), "driver", "/etc"),))[0]
    fn = read_pci_function(tmp_path, vf)
    assert fn.driver is None and fn.vendor == 0x8086
    assert fn.escapes == (f"/sys/devices/pci0000:3d/{vf}/driver -> /etc",)


def test_a_file_that_is_a_link_out_of_the_root_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("0x8086\n")
    vf = build(tmp_path / "root", c62x(vfs=1))[0]
    vendor = tmp_path / f"root/sys/bus/pci/devices/{vf}/vendor"
    vendor.unlink()
    vendor.symlink_to("../../../../../outside")
    fn = read_pci_function(tmp_path / "root", vf)
    assert fn.vendor is None
    assert fn.escapes == (f"/sys/devices/pci0000:3d/{vf}/vendor -> ../../../../../outside",)


def test_a_directory_link_out_of_the_root_is_caught_midway(tmp_path: Path) -> None:
    (tmp_path / "elsewhere/devices").mkdir(parents=True)
    vf = build(tmp_path / "root", c62x(vfs=1))[0]
    group_dir = tmp_path / "root/sys/kernel/iommu_groups/1"
    os.rename(group_dir, tmp_path / "elsewhere/1")
    group_dir.symlink_to(tmp_path / "elsewhere/1")
    fn = read_pci_function(tmp_path / "root", vf)
    assert fn.iommu_group == 1
    assert fn.escapes == (f"/sys/kernel/iommu_groups/1 -> {tmp_path}/elsewhere/1",)


def test_a_file_link_that_stays_inside_the_root_is_followed(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=1))[0]
    vendor = tmp_path / f"sys/bus/pci/devices/{vf}/vendor"
    (tmp_path / "vendor-copy").write_text("0x8086\n")
    vendor.unlink()
    vendor.symlink_to("../../../../vendor-copy")
    assert read_pci_function(tmp_path, vf).vendor == 0x8086


def test_a_link_loop_is_reported_not_a_crash(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=1))[0]
    loop = tmp_path / "sys/kernel/iommu_groups/1"
    os.rename(loop, tmp_path / "gone")
    loop.symlink_to("1/devices")
    fn = read_pci_function(tmp_path, vf)
    assert fn.escapes and "loop" in fn.escapes[0]


def test_the_reader_lists_every_function_sorted(tmp_path: Path) -> None:
    vfs = build(tmp_path, gen4(vfs=2), c62x(vfs=2), extra_devices=(nic(),))
    listing = PciReader(tmp_path).listing()
    assert listing == tuple(sorted((C62X_PF, NIC, Bdf(0, 0x6B, 0, 0), *vfs)))


def test_a_host_root_of_slash_reads_absolute_paths(tmp_path: Path) -> None:
    (tmp_path / "value").write_text("0x37c9\n")
    (tmp_path / "link").symlink_to("value")
    tree = HostTree(Path("/"))
    assert tree.read_hex(str(tmp_path / "link")) == 0x37C9
    assert tree.link_name(str(tmp_path / "link")) == "value"


def test_the_real_sysfs_reads_without_errors() -> None:
    reader = PciReader(Path("/"))
    functions = [reader.function(bdf) for bdf in reader.listing()]
    if not functions:
        pytest.skip("this machine shows no PCI devices")
    assert all(fn.present and fn.escapes == () and fn.vendor is not None for fn in functions)


def test_an_iommu_group_link_to_a_missing_group_is_no_group(tmp_path: Path) -> None:
    """A dangling link proves no group, nor that the IOMMU is on."""
    vf = build(tmp_path, c62x(vfs=1))[0]
    for group in (tmp_path / "sys/kernel/iommu_groups").iterdir():  # the PF's and the VF's
        shutil.rmtree(group)
    assert os.path.islink(tmp_path / f"sys/bus/pci/devices/{vf}/iommu_group")
    fn = read_pci_function(tmp_path, vf)
    assert fn.iommu_group is None and fn.group_peers == () and fn.escapes == ()
    assert fn.host.iommu_enabled is False, "no group directory is left, so the IOMMU reads as off"
