"""Fresh device checks keep directories' real paths between checks, never a device's facts.

Each example builds a small simulated host (two C62x VFs, a NIC with its own group), then
changes the host between checks in generated ways: a driver bound or unbound, a bus entry
removed or pointed at another device or out of the root, a device directory or an IOMMU group
turned into a link out of the root, a group gone, joined by the NIC or swapped for the NIC's, a
VFIO node removed, an ID file turned into garbage or a link. After every change, one long-lived
``FreshDeviceChecks`` (its kept directories warm from the checks before) must judge every
function exactly as a read from scratch does, and read the same snapshot.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handler.core.bdf import Bdf
from handler.core.device_rules import check_device
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.pci import read_pci_function
from handler.host.simulated_host import SimulatedDevice, SimulatedHost, SimulatedPf, build_simulated_host
from tests.reliability.profiles import SMALL_SETTINGS

pytestmark = pytest.mark.fuzz

PF = Bdf(0, 0x3D, 0, 0)
NIC = Bdf(0, 0x3E, 0, 0)
HOST = SimulatedHost(
    pfs=(SimulatedPf(family="C62x", bdf=PF, vfs=2),),
    extra_devices=(SimulatedDevice(NIC, 0x1572, 0x020000, "i40e"),),
)


class World:
    def __init__(self, base: Path) -> None:
        self.outside = base / "outside"
        self.root = base / "root"
        self.outside.mkdir()
        self.vfs = build_simulated_host(self.root, HOST)
        self.functions = (*self.vfs, PF, NIC)

    def entry(self, bdf: Bdf) -> Path:
        return self.root / f"sys/bus/pci/devices/{bdf}"

    def folder(self, bdf: Bdf) -> Path:
        """The device's directory where the simulated host made it (its entry may lead elsewhere now)."""
        return self.root / f"sys/devices/pci0000:{bdf.bus:02x}/{bdf}"

    def group(self, bdf: Bdf) -> Path:
        return self.root / f"sys/kernel/iommu_groups/{os.readlink(self.folder(bdf) / 'iommu_group').split('/')[-1]}"


def relink(link: Path, target: str) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def move_out(world: World, path: Path) -> None:
    """Replace a directory with a link to a copy of it outside the root (once)."""
    if path.is_symlink() or not path.is_dir():
        return
    copy = world.outside / f"copy-{len(os.listdir(world.outside))}"
    shutil.move(str(path), copy)
    path.symlink_to(copy)


def _rebind(world: World, vf: Bdf, driver: str) -> None:
    link = world.folder(vf) / "driver"
    if driver == "none":
        link.unlink(missing_ok=True)
    else:
        relink(link, f"../../../bus/pci/drivers/{driver}")


def _group_swap(world: World, vf: Bdf) -> None:
    relink(world.folder(vf) / "iommu_group", os.readlink(world.folder(NIC) / "iommu_group"))


def _join_group(world: World, vf: Bdf) -> None:
    if (world.folder(vf) / "iommu_group").exists():
        relink(world.group(vf) / f"devices/{NIC}", f"../../../../devices/pci0000:3e/{NIC}")


def _group_gone(world: World, vf: Bdf) -> None:
    if (world.folder(vf) / "iommu_group").exists():
        shutil.rmtree(world.group(vf))


def _node_gone(world: World, vf: Bdf) -> None:
    if (world.folder(vf) / "iommu_group").exists():
        node = world.root / f"dev/vfio/{world.group(vf).name}"
        node.unlink(missing_ok=True)


def _vendor(world: World, vf: Bdf, how: str) -> None:
    vendor = world.folder(vf) / "vendor"
    if not world.folder(vf).is_dir():
        return
    if how == "garbage":
        vendor.unlink(missing_ok=True)
        vendor.write_text("banana\n")
    elif how == "inside":
        (world.root / "vendor-copy").write_text("0x8086\n")
        relink(vendor, "../../../../vendor-copy")
    else:
        (world.outside / "vendor").write_text("0x8086\n")
        relink(vendor, str(world.outside / "vendor"))


CHANGES: dict[str, Callable[[World, Bdf], None]] = {
    "bind host driver": lambda w, vf: _rebind(w, vf, "c6xxvf"),
    "bind vfio-pci": lambda w, vf: _rebind(w, vf, "vfio-pci"),
    "unbind": lambda w, vf: _rebind(w, vf, "none"),
    "entry removed": lambda w, vf: w.entry(vf).unlink(missing_ok=True),
    "entry to the NIC": lambda w, vf: relink(w.entry(vf), f"../../../devices/pci0000:3e/{NIC}"),
    "entry to the PF": lambda w, vf: relink(w.entry(vf), f"../../../devices/pci0000:3d/{PF}"),
    "entry out of the root": lambda w, vf: relink(w.entry(vf), str(w.outside)),
    "entry restored": lambda w, vf: relink(w.entry(vf), f"../../../devices/pci0000:3d/{vf}"),
    "device directory out of the root": lambda w, vf: move_out(w, w.folder(vf)),
    "group swapped for the NIC's": _group_swap,
    "NIC joins the group": _join_group,
    "group gone": _group_gone,
    "group out of the root": lambda w, vf: move_out(w, w.group(vf)) if w.folder(vf).is_dir() else None,
    "VFIO node gone": _node_gone,
    "vendor garbage": lambda w, vf: _vendor(w, vf, "garbage"),
    "vendor a link inside": lambda w, vf: _vendor(w, vf, "inside"),
    "vendor a link out": lambda w, vf: _vendor(w, vf, "out"),
}


@SMALL_SETTINGS
@given(st.lists(st.tuples(st.sampled_from(sorted(CHANGES)), st.integers(0, 1)), min_size=1, max_size=5))
def test_a_warm_checker_judges_every_change_as_a_read_from_scratch(changes: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory(prefix="qat-fresh-") as base:
        world = World(Path(base))
        checks = FreshDeviceChecks(world.root)
        for bdf in world.functions:  # warm: every directory the checks keep is kept now
            assert checks.check(bdf, None) == from_scratch(checks, world, bdf)
        for change, which in changes:
            with contextlib.suppress(OSError):  # a change that no longer applies leaves the host as it is
                CHANGES[change](world, world.vfs[which])
            for bdf in world.functions:
                assert checks.check(bdf, None) == from_scratch(checks, world, bdf), (change, bdf)
                assert read_pci_function(checks._root, bdf) == read_pci_function(world.root, bdf), (change, bdf)


def from_scratch(checks: FreshDeviceChecks, world: World, bdf: Bdf) -> object:
    return check_device(read_pci_function(world.root, bdf), None, checks._rules)
