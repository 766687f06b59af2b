"""The doctor's findings on generated hosts, against golden JSON in tests/data/doctor/.

After an intended change of wording, regenerate the golden files and review the diff:

    REGENERATE_GOLDEN=1 /tmp/v/bin/python -m pytest tests/host/test_doctor.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from handler.core.bdf import Bdf
from handler.core.doctor_report import Check, Report
from handler.host.doctor import run_doctor
from handler.host.simulated_host import EscapingLink
from tests.host.trees import C62X_PF, build, c62x, gen4, nic

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "doctor"


def libvirt_up() -> tuple[bool, str]:
    return True, "libvirt 9.0.0 at qemu:///system"


def libvirt_down() -> tuple[bool, str]:
    return False, "cannot connect to qemu:///system: Failed to connect socket"


def assert_golden(name: str, report: Report) -> None:
    path = GOLDEN / f"{name}.json"
    text = report.to_json()
    if os.environ.get("REGENERATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}; run with REGENERATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{path} differs; see the module docstring"


def test_a_healthy_host(tmp_path: Path) -> None:
    build(tmp_path, c62x(vfs=2), gen4(vfs=2), denylist_disabled=True, memlock=None)
    report = run_doctor(tmp_path, libvirt_up)
    assert report.ok and report.exit_code == 0
    assert all(check.ok for check in report.checks)
    assert_golden("healthy", report)


def test_warnings_do_not_fail_the_node(tmp_path: Path) -> None:
    build(
        tmp_path,
        c62x(vfs=3, vf_drivers=((1, "c6xxvf"),)),
        gen4(vfs=2, state="down"),
        extra_devices=(nic(share_group_with=Bdf(0, 0x3D, 1, 2)),),
    )
    report = run_doctor(tmp_path, libvirt_up)
    assert report.exit_code == 0
    assert {check.name for check in report.checks if not check.ok} == {
        "vfio-pci denylist",
        "PF 0000:6b:00.0",
        "VF 0000:3d:01.1",
        "VF 0000:3d:01.2",
    }
    assert_golden("warnings", report)


def test_a_host_that_cannot_pass_devices_through(tmp_path: Path) -> None:
    build(
        tmp_path,
        c62x(vfs=2, vf_driver="c6xxvf"),
        gen4(vfs=0),
        iommu=False,
        vfio_pci_loaded=False,
        kvm=False,
        escaping_links=(EscapingLink(C62X_PF, "driver", "/"),),
    )
    report = run_doctor(tmp_path, libvirt_down)
    assert report.exit_code == 1
    failed = [check.name for check in report.checks if not check.ok and check.required]
    assert failed == ["host root", "IOMMU", "vfio-pci module", "KVM", "libvirt", "usable VFs"]
    assert_golden("broken", report)


def test_an_empty_host_root(tmp_path: Path) -> None:
    report = run_doctor(tmp_path, libvirt_up)
    assert report.exit_code == 1
    assert_golden("empty", report)


def test_the_text_marks_failures_warnings_and_fixes(tmp_path: Path) -> None:
    build(tmp_path, c62x(vfs=1, vf_driver="c6xxvf"), iommu=False)
    text = run_doctor(tmp_path, libvirt_up).to_text()
    lines = text.splitlines()
    assert "✘ IOMMU: off: /sys/kernel/iommu_groups is empty" in lines
    iommu = lines.index("✘ IOMMU: off: /sys/kernel/iommu_groups is empty")
    assert lines[iommu + 1] == "    fix: enable VT-d in firmware and boot with intel_iommu=on (and iommu=pt)"
    assert "✔ libvirt: libvirt 9.0.0 at qemu:///system" in lines
    assert any(line.startswith("⚠ vfio-pci denylist: 1 C62x VF(s) not on vfio-pci") for line in lines)
    assert lines[-1] == "NOT ready for QAT passthrough: 2 required check(s) failed, 2 warning(s)"


def test_kvm_is_optional_for_tcg_domains(tmp_path: Path) -> None:
    build(tmp_path, gen4(vfs=1), kvm=False)
    assert run_doctor(tmp_path, libvirt_up).exit_code == 1
    report = run_doctor(tmp_path, libvirt_up, domain_type="qemu")
    kvm = next(check for check in report.checks if check.name == "KVM")
    assert (kvm.ok, kvm.required, report.exit_code) == (False, False, 0)


def test_a_probe_that_raises_is_a_failed_check(tmp_path: Path) -> None:
    def probe() -> tuple[bool, str]:
        raise ConnectionError("no socket")

    build(tmp_path, gen4(vfs=1))
    report = run_doctor(tmp_path, probe)
    libvirt = next(check for check in report.checks if check.name == "libvirt")
    assert (libvirt.ok, libvirt.detail) == (False, "probe failed: no socket")
    assert report.exit_code == 1


def test_the_memlock_limit_is_read_from_the_host_root(tmp_path: Path) -> None:
    build(tmp_path, gen4(vfs=1), memlock=8 * 1024 * 1024)
    memlock = next(check for check in run_doctor(tmp_path, libvirt_up).checks if check.name == "RLIMIT_MEMLOCK")
    assert memlock.detail.startswith("8 MiB for this process;")


@pytest.mark.parametrize(
    ("check", "mark"),
    [(Check("a", True, True, ""), "✔"), (Check("a", False, True, ""), "✘"), (Check("a", False, False, ""), "⚠")],
)
def test_marks(check: Check, mark: str) -> None:
    assert check.mark == mark


def test_json_round_trips(tmp_path: Path) -> None:
    build(tmp_path, gen4(vfs=1))
    body = json.loads(run_doctor(tmp_path, libvirt_up).to_json())
    assert body["ok"] is True
    assert set(body["checks"][0]) == {"name", "ok", "required", "detail", "fix"}
