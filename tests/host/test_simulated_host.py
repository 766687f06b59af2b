"""The simulated host has the shape of a real QAT host's sysfs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from handler.core.bdf import Bdf
from handler.core.permitted_devices import PermittedDevices
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.inspector import HostInspector
from handler.host.simulated_host import (
    EscapingLink,
    SimulatedHost,
    SimulatedPf,
    build_simulated_host,
    host_vf_driver,
)
from tests.host.trees import C62X_PF, GEN4_PF, build, c62x, gen4, nic


def test_vfs_follow_the_pf_at_the_first_vf_offset(tmp_path: Path) -> None:
    vfs = build(tmp_path, c62x(vfs=10), gen4(vfs=9))
    assert [str(vf) for vf in vfs[:2]] == ["0000:3d:01.0", "0000:3d:01.1"]
    assert str(vfs[9]) == "0000:3d:02.1"
    assert [str(vf) for vf in vfs[10:12]] == ["0000:6b:00.1", "0000:6b:00.2"]
    assert str(vfs[-1]) == "0000:6b:01.1"


def test_files_and_relative_links_look_like_sysfs(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=2))[1]
    entry = tmp_path / f"sys/bus/pci/devices/{vf}"
    assert os.readlink(entry) == f"../../../devices/pci0000:3d/{vf}"
    assert (entry / "vendor").read_text() == "0x8086\n"
    assert (entry / "device").read_text() == "0x37c9\n"
    assert (entry / "class").read_text() == "0x0b4000\n"
    assert os.readlink(entry / "driver") == "../../../bus/pci/drivers/vfio-pci"
    assert os.readlink(entry / "physfn") == f"../{C62X_PF}"
    assert os.readlink(tmp_path / f"sys/bus/pci/devices/{C62X_PF}/virtfn1") == f"../{vf}"
    group = os.readlink(entry / "iommu_group")
    assert group == "../../../kernel/iommu_groups/2"
    assert (tmp_path / f"sys/kernel/iommu_groups/2/devices/{vf}").resolve() == entry.resolve()
    assert (tmp_path / "dev/vfio/2").exists() and (tmp_path / "dev/vfio/vfio").exists()
    assert (tmp_path / f"sys/bus/pci/devices/{C62X_PF}/sriov_numvfs").read_text() == "2\n"
    assert not any(os.path.isabs(os.readlink(p)) for p in tmp_path.rglob("*") if p.is_symlink())


def test_gen4_pf_has_services_and_state(tmp_path: Path) -> None:
    build(tmp_path, gen4(vfs=1, services="dc", state="down"))
    qat = tmp_path / f"sys/bus/pci/devices/{GEN4_PF}/qat"
    assert (qat / "cfg_services").read_text() == "dc\n"
    assert (qat / "state").read_text() == "down\n"
    assert not (tmp_path / f"sys/bus/pci/devices/{C62X_PF}").exists()


def test_shared_group_and_no_iommu_variants(tmp_path: Path) -> None:
    vfs = build(tmp_path / "shared", c62x(vfs=1), extra_devices=(nic(share_group_with=C62X_PF),))
    members = os.listdir(tmp_path / "shared/sys/kernel/iommu_groups/0/devices")
    assert sorted(members) == [str(C62X_PF), "0000:3d:00.1"]
    build(tmp_path / "off", c62x(vfs=1, vf_driver=None), iommu=False)
    assert os.listdir(tmp_path / "off/sys/kernel/iommu_groups") == []
    assert not (tmp_path / f"off/sys/bus/pci/devices/{vfs[0]}/iommu_group").exists()


def test_host_vf_drivers_are_named_as_the_qat_drivers_name_them() -> None:
    assert host_vf_driver("C62x") == "c6xxvf"
    assert host_vf_driver("4xxx") == "4xxxvf"
    assert host_vf_driver("402xx") == "4xxxvf"
    assert host_vf_driver("DH895xCC") == "dh895xccvf"


def test_escaping_link_points_out_of_the_tree(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=1), escaping_links=(EscapingLink(C62X_PF, "driver", "/etc"),))[0]
    assert os.readlink(tmp_path / f"sys/bus/pci/devices/{C62X_PF}/driver") == "/etc"
    assert os.readlink(tmp_path / f"sys/bus/pci/devices/{vf}/driver").startswith("../")


def test_the_tree_can_be_moved(tmp_path: Path) -> None:
    vfs = build(tmp_path / "a", c62x(vfs=3))
    shutil.move(tmp_path / "a", tmp_path / "b")
    assert HostInspector(FreshDeviceChecks(tmp_path / "b", PermittedDevices())).usable_vfs() == vfs


def test_a_spec_that_builds_one_address_twice_is_refused(tmp_path: Path) -> None:
    twice = SimulatedPf("4xxx", Bdf(0, 0x6B, 0, 1), 1)
    with pytest.raises(ValueError, match="built twice"):
        build(tmp_path, gen4(vfs=1), twice)


def test_1024_vfs_build_with_distinct_addresses(ram_path: Path) -> None:
    pfs = tuple(SimulatedPf("4xxx", Bdf(0, 0x40 + i, 0, 0), 16) for i in range(64))
    vfs = build_simulated_host(ram_path, SimulatedHost(pfs))
    assert len(vfs) == len(set(vfs)) == 1024
    assert len(list((ram_path / "sys/bus/pci/devices").iterdir())) == 64 + 1024
