"""The nested test's scaffolding, without booting anything: its skip line and its module ordering."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.nested import l1
from tests.support.nested.packages import MissingFeature, _copy_modules


def fake_qemu(tmp_path: Path, devices: list[str]) -> Path:
    """A qemu-system-x86_64 on PATH whose `-device help` lists only ``devices``."""
    listing = "".join(f'name "{name}", bus PCI\\n' for name in devices)
    script = tmp_path / "bin" / l1.QEMU
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\nprintf '{listing}'\n")
    script.chmod(0o755)
    return script.parent


def test_the_skip_line_names_each_missing_qemu_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{fake_qemu(tmp_path, ['virtio-9p-pci', 'e1000e'])}{os.pathsep}/usr/bin:/bin")
    assert l1.missing_capabilities() == "qemu-system-x86_64 has no edu, intel-iommu device"


def test_nothing_is_missing_when_qemu_has_all_three(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{fake_qemu(tmp_path, ['edu', 'intel-iommu', 'virtio-9p-pci'])}{os.pathsep}/bin")
    assert l1.missing_capabilities() is None


def test_without_qemu_the_skip_line_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert l1.missing_capabilities() == "qemu-system-x86_64 is not installed"


def _module(folder: Path, name: str, depends: str) -> None:
    (folder / f"{name}.ko").write_bytes(b"\x7fELF...\0license=GPL\0depends=" + depends.encode() + b"\0vermagic=x\0")


def test_modules_come_after_what_they_depend_on(tmp_path: Path) -> None:
    tree, dest = tmp_path / "kernel", tmp_path / "out"
    tree.mkdir()
    dest.mkdir()
    _module(tree, "vfio-pci", "vfio,vfio-pci-core")
    _module(tree, "vfio-pci-core", "vfio,irqbypass")
    _module(tree, "vfio", "")
    _module(tree, "irqbypass", "")
    _module(tree, "unrelated", "")
    assert _copy_modules(tree, ("vfio_pci",), dest) == ["vfio", "irqbypass", "vfio_pci_core", "vfio_pci"]
    assert sorted(p.name for p in dest.iterdir()) == ["irqbypass.ko", "vfio.ko", "vfio_pci.ko", "vfio_pci_core.ko"]


def test_a_kernel_without_a_needed_module_is_a_missing_feature(tmp_path: Path) -> None:
    (tmp_path / "kernel").mkdir()
    _module(tmp_path / "kernel", "9pnet_virtio", "9pnet,virtio")
    with pytest.raises(MissingFeature, match=r"kernel module 9pnet \(needed for 9pnet_virtio\)"):
        _copy_modules(tmp_path / "kernel", ("9pnet_virtio",), tmp_path)
