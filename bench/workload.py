"""The benchmark's inputs: a simulated 1,024-VF QAT host, VMI manifests with env files, and the
domain XMLs the agent would render for them (for the bare libvirt baseline)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from handler.baremetal.manifest_file import default_uid
from handler.core.bdf import Bdf
from handler.core.device_env import AssignedDevice
from handler.core.domain_xml import render_domain
from handler.core.render_settings import RenderSettings
from handler.core.vmi_parse import parse_vmi
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host

NAMESPACE = "qat-bench"
RESOURCE = "qat.intel.com/generic"
PFS = 64
"""64 C62x PFs of 16 VFs each: 1,024 VFs, each PF on its own bus as on a multi-socket host."""
VFS_PER_PF = 16


@dataclass(frozen=True, slots=True)
class Workload:
    vmi_dir: Path
    state_dir: Path
    host_root: Path
    names: tuple[str, ...]
    vfs: tuple[Bdf, ...]
    """The VF given to each VMI, in the order of ``names``."""


def build_host(host_root: Path) -> tuple[Bdf, ...]:
    pfs = tuple(SimulatedPf(family="C62x", bdf=Bdf(0, 0x10 + i, 0, 0), vfs=VFS_PER_PF) for i in range(PFS))
    vfs: tuple[Bdf, ...] = build_simulated_host(host_root, SimulatedHost(pfs=pfs))
    return vfs


def manifest_text(name: str, memory: str, with_qat: bool, grace_seconds: int = 30) -> str:
    """A VMI manifest as an operator would write it: YAML, one QAT entry (or none)."""
    devices = f"      qats:\n        - name: qat0\n          deviceName: {RESOURCE}\n" if with_qat else "      {}\n"
    return (
        "apiVersion: kubevirt.io/v1\n"
        "kind: VirtualMachineInstance\n"
        "metadata:\n"
        f"  name: {name}\n"
        f"  namespace: {NAMESPACE}\n"
        "  labels:\n"
        "    kubevirt.io/nodeName: node01\n"
        "spec:\n"
        f"  terminationGracePeriodSeconds: {grace_seconds}\n"
        "  domain:\n"
        "    cpu:\n"
        "      cores: 1\n"
        "    memory:\n"
        f"      guest: {memory}\n"
        "    devices:\n"
        f"{devices}"
    )


def write_throughput_workload(work: Path, host_root: Path, count: int) -> Workload:
    """``count`` manifests, each with one distinct VF of the 1,024-VF host named in its env file.

    ``host_root`` belongs in memory (tmpfs), as the real sysfs is; manifests and the state
    directory go to ``work`` on disk, so the status file's fsync is a real one.
    """
    vmi_dir, state_dir = work / "vmis", work / "state"
    vfs = build_host(host_root)
    if count > len(vfs):
        raise SystemExit(f"--vmis {count} is more than the simulated host's {len(vfs)} VFs")
    vmi_dir.mkdir(parents=True)
    names = tuple(f"vmi-{index:04d}" for index in range(count))
    for name, vf in zip(names, vfs, strict=False):
        (vmi_dir / f"{name}.yaml").write_text(manifest_text(name, "64Mi", with_qat=True))
        (vmi_dir / f"{name}.env").write_text(f"QAT0={vf}\n")
    return Workload(vmi_dir, state_dir, host_root, names, vfs[:count])


def write_plain_workload(work: Path, count: int) -> Workload:
    """``count`` manifests of tiny device-less guests (16 MiB, no OS): VFIO cannot run here."""
    vmi_dir, state_dir = work / "vmis", work / "state"
    vmi_dir.mkdir(parents=True)
    names = tuple(f"idle-{index:03d}" for index in range(count))
    for name in names:
        (vmi_dir / f"{name}.yaml").write_text(manifest_text(name, "16Mi", with_qat=False, grace_seconds=0))
    return Workload(vmi_dir, state_dir, work / "host", names, ())


def render_all(workload: Workload, settings: RenderSettings) -> list[str]:
    """The XML the agent defines for each VMI (same renderer, same settings), untimed."""
    import yaml

    xmls = []
    for name, vf in zip(workload.names, workload.vfs, strict=True):
        document = yaml.safe_load((workload.vmi_dir / f"{name}.yaml").read_text())
        vmi = parse_vmi(document, default_uid=default_uid(NAMESPACE, name))
        xmls.append(render_domain(vmi, (AssignedDevice("qat0", RESOURCE, vf, "QAT0"),), settings))
    return xmls
