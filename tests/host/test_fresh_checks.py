"""Device checks keep only directories' real paths between checks: every check still sees the
device's own links and files as they are now, and judges exactly as a check from scratch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pytest import MonkeyPatch

from handler.core.bdf import Bdf
from handler.core.device_rules import check_device
from handler.core.permitted_devices import PermitMode, parse_permitted_devices
from handler.core.refusal import Refusal
from handler.host import fresh_checks
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.inspector import HostInspector
from handler.host.pci import read_pci_function
from tests.host.trees import build, c62x


def from_scratch(checks: FreshDeviceChecks, root: Path, bdf: Bdf) -> Refusal | None:
    return check_device(read_pci_function(root, bdf), None, checks._rules)


def sysfs(root: Path, relative: str) -> Path:
    return root / "sys" / relative


def test_every_vf_is_judged_as_from_scratch(tmp_path: Path) -> None:
    vfs = build(tmp_path, c62x(vfs=4))
    checks = FreshDeviceChecks(tmp_path)
    for _ in range(2):  # the second round uses what the first one kept
        for vf in vfs:
            assert checks.check(vf, None) == from_scratch(checks, tmp_path, vf)
    assert all(checks.check(vf, None) is None for vf in vfs)


def test_a_driver_change_between_checks_is_seen(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=1))[0]
    checks = FreshDeviceChecks(tmp_path)
    assert checks.check(vf, None) is None
    folder = (sysfs(tmp_path, f"bus/pci/devices/{vf}")).resolve()
    os.unlink(folder / "driver")
    os.symlink("../../../bus/pci/drivers/c6xxvf", folder / "driver")
    refusal = checks.check(vf, None)
    assert refusal is not None and refusal == from_scratch(checks, tmp_path, vf)


def test_a_vf_that_went_away_between_checks_is_seen(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=2))[0]
    checks = FreshDeviceChecks(tmp_path)
    assert checks.check(vf, None) is None
    os.unlink(sysfs(tmp_path, f"bus/pci/devices/{vf}"))
    refusal = checks.check(vf, None)
    assert refusal is not None and refusal == from_scratch(checks, tmp_path, vf)


def test_a_device_entry_turned_into_a_link_out_of_the_root_is_caught_on_the_next_check(tmp_path: Path) -> None:
    vf = build(tmp_path, c62x(vfs=1))[0]
    checks = FreshDeviceChecks(tmp_path)
    assert checks.check(vf, None) is None
    entry = sysfs(tmp_path, f"bus/pci/devices/{vf}")
    os.unlink(entry)
    os.symlink("/sys", entry)
    refusal = checks.check(vf, None)
    assert refusal is not None and "/sys" in refusal.line()
    assert refusal == from_scratch(checks, tmp_path, vf)


def test_a_scan_is_judged_by_the_same_checks_and_follows_their_switch(tmp_path: Path) -> None:
    """The inspector's cached scan and the fresh checks share one permitted list and rule set."""
    vfs = build(tmp_path, c62x(vfs=2))
    checks = FreshDeviceChecks(tmp_path)
    inspector = HostInspector(checks)
    assert inspector.usable_vfs("qat.intel.com/generic") == tuple(vfs)
    assert [inspector.check(vf, "qat.intel.com/generic") for vf in vfs] == [
        checks.check(vf, "qat.intel.com/generic") for vf in vfs
    ]
    checks.use(parse_permitted_devices({"pciHostDevices": []}, PermitMode.REPLACE))  # as on SIGHUP
    refused = inspector.check(vfs[0], "qat.intel.com/generic")
    assert refused is not None and refused == checks.check(vfs[0], "qat.intel.com/generic")
    assert inspector.usable_vfs() == ()


def test_an_iommu_group_turned_into_a_link_out_of_the_root_is_caught_on_the_next_check(tmp_path: Path) -> None:
    """The group's directory was kept as real by the first check; seeing it a link now forgets that."""
    (tmp_path / "outside").mkdir()
    root = tmp_path / "root"
    vf = build(root, c62x(vfs=1))[0]
    checks = FreshDeviceChecks(root)
    assert checks.check(vf, None) is None
    group = sysfs(root, "kernel/iommu_groups/1")
    shutil.move(str(group), tmp_path / "outside/1")
    group.symlink_to(tmp_path / "outside/1")
    refusal = checks.check(vf, None)
    assert refusal is not None and "/sys/kernel/iommu_groups/1 ->" in refusal.line()
    assert refusal == from_scratch(checks, root, vf)


def test_a_bus_entry_pointed_at_another_device_is_followed_on_the_next_check(tmp_path: Path) -> None:
    vfs = build(tmp_path, c62x(vfs=2, vf_drivers=((1, "c6xxvf"),)))
    checks = FreshDeviceChecks(tmp_path)
    assert checks.check(vfs[0], None) is None and checks.check(vfs[1], None) is not None
    entry = sysfs(tmp_path, f"bus/pci/devices/{vfs[0]}")
    os.unlink(entry)
    os.symlink(os.readlink(sysfs(tmp_path, f"bus/pci/devices/{vfs[1]}")), entry)
    refusal = checks.check(vfs[0], None)
    assert refusal is not None and "c6xxvf" in refusal.line()
    assert refusal == from_scratch(checks, tmp_path, vfs[0])


def test_the_host_root_is_resolved_once_per_settings(tmp_path: Path) -> None:
    """A host root that is a link is resolved when the checks start and again on SIGHUP (``use``)."""
    build(tmp_path / "a", c62x(vfs=1))
    vf = build(tmp_path / "b", c62x(vfs=1, vf_driver="c6xxvf"))[0]
    (tmp_path / "host").symlink_to("a")
    checks = FreshDeviceChecks(tmp_path / "host")
    assert checks.check(vf, None) is None
    (tmp_path / "host").unlink()
    (tmp_path / "host").symlink_to("b")
    assert checks.check(vf, None) is None, "still the root resolved at start"
    checks.use(checks.permitted)
    refusal = checks.check(vf, None)
    assert refusal is not None and refusal == from_scratch(checks, tmp_path / "b", vf)


def test_past_the_kept_directories_limit_the_checks_start_over(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    vfs = build(tmp_path, c62x(vfs=4))
    monkeypatch.setattr(fresh_checks, "MAX_KEPT_DIRS", 3)
    checks = FreshDeviceChecks(tmp_path)
    for vf in vfs * 2:
        kept, size = checks._root.dirs, len(checks._root.dirs)
        assert checks.check(vf, None) is None
        assert (checks._root.dirs is not kept) == (size > 3), "forgotten only past the limit"
