"""The lean fresh read: the usual VF in one pass, anything else by the general reader, and the
same snapshot as a read from scratch either way."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pytest import MonkeyPatch

from handler.core.bdf import Bdf
from handler.core.pci_function import PciFunction
from handler.host import fresh_read
from handler.host.fresh_read import read_fresh
from handler.host.host_tree import HostRoot
from handler.host.pci import PciReader, read_pci_function
from handler.host.simulated_host import EscapingLink
from tests.host.trees import NIC, build, c62x, gen4, nic

VF = Bdf(0, 0x3D, 1, 0)


class CountingReader(PciReader):
    calls = 0

    def function(self, bdf: Bdf) -> PciFunction:
        CountingReader.calls += 1
        return super().function(bdf)


@pytest.fixture
def general(monkeypatch: MonkeyPatch) -> type[CountingReader]:
    CountingReader.calls = 0
    monkeypatch.setattr(fresh_read, "PciReader", CountingReader)
    return CountingReader


def test_usual_vfs_are_read_in_one_pass(tmp_path: Path, general: type[CountingReader]) -> None:
    vfs = build(tmp_path, c62x(vfs=2), gen4(vfs=1, vf_driver="4xxxvf"))
    root = HostRoot(tmp_path)
    for vf in vfs:
        assert read_fresh(root, vf) == read_pci_function(tmp_path, vf)
    assert general.calls == 0


def test_a_vf_sharing_its_group_is_read_by_the_general_reader(tmp_path: Path, general: type[CountingReader]) -> None:
    build(tmp_path, c62x(vfs=1), extra_devices=(nic(share_group_with=VF),))
    function = read_fresh(HostRoot(tmp_path), VF)
    assert function == read_pci_function(tmp_path, VF) and [peer.bdf for peer in function.group_peers] == [NIC]
    assert general.calls == 1


def test_a_link_out_of_the_root_is_read_by_the_general_reader(tmp_path: Path, general: type[CountingReader]) -> None:
    build(tmp_path, c62x(vfs=1), escaping_links=(EscapingLink(VF, "physfn", "/etc"),))
    function = read_fresh(HostRoot(tmp_path), VF)
    assert function == read_pci_function(tmp_path, VF) and function.escapes
    assert general.calls == 1


def test_missing_devices_and_groups_are_read_by_the_general_reader(
    tmp_path: Path, general: type[CountingReader]
) -> None:
    build(tmp_path, c62x(vfs=1))
    root = HostRoot(tmp_path)
    assert read_fresh(root, Bdf(0, 0x99, 0, 0)) == read_pci_function(tmp_path, Bdf(0, 0x99, 0, 0))
    shutil.rmtree(tmp_path / "sys/kernel/iommu_groups/1")
    function = read_fresh(root, VF)
    assert function == read_pci_function(tmp_path, VF) and function.iommu_group is None
    assert general.calls == 2
