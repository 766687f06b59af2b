"""A sysfs-shaped tree that looks like a QAT host, for the demo, benchmarks and tests.

``build_simulated_host(root, spec)`` lays out, under ``root``, what the agent reads on a
real host: ``sys/bus/pci/devices/<bdf>`` links into ``sys/devices/pci<dom>:<bus>/<bdf>``,
``driver`` and ``iommu_group`` links, ``sys/kernel/iommu_groups``, SR-IOV ``physfn`` /
``virtfn<i>`` links, Gen4+ ``qat/cfg_services``, ``dev/vfio``, ``sys/module/vfio_pci``,
``dev/kvm`` and ``proc/self/limits``. Every link is relative, so the tree can be moved.
VFs follow the PF at its routing ID plus the SR-IOV First VF Offset, as the hardware does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from handler.core.bdf import Bdf
from handler.core.pci_function import VFIO_PCI
from handler.core.qat_ids import FAMILIES, INTEL_VENDOR, QatFamily

QAT_CLASS = 0x0B4000
"""Processing accelerator (co-processor) class, as QAT functions report it."""
BRIDGE_CLASS = 0x060400

_PF_DRIVERS = {"DH895xCC": "dh895xcc", "C62x": "c6xx", "401xx": "4xxx", "402xx": "4xxx"}
_LIMITS_HEADER = f"{'Limit':<26}{'Soft Limit':<21}{'Hard Limit':<21}{'Units':<10}\n"


def pf_driver(family: QatFamily) -> str:
    """The host (QAT) driver's name for a family's PF, e.g. ``c6xx``; its VF driver adds ``vf``."""
    return _PF_DRIVERS.get(family.name, family.name.lower())


def host_vf_driver(family_name: str) -> str:
    """The QAT host driver a VF binds to when not on vfio-pci, e.g. ``c6xxvf`` or ``4xxxvf``."""
    return pf_driver(_family(family_name)) + "vf"


@dataclass(frozen=True, slots=True)
class SimulatedPf:
    family: str
    """A family name from ``handler.core.qat_ids`` (``C62x``, ``4xxx``...)."""
    bdf: Bdf
    vfs: int
    """``sriov_numvfs``: how many VFs exist."""
    vf_driver: str | None = VFIO_PCI
    vf_drivers: tuple[tuple[int, str | None], ...] = ()
    """Per-VF exceptions to ``vf_driver``, as (VF index, driver)."""
    total_vfs: int = 16
    services: str = "sym;asym"
    """Gen4+ ``qat/cfg_services``."""
    state: str = "up"
    """Gen4+ ``qat/state``."""
    numa_node: int | None = None
    """The node the PF and its VFs hang off (sysfs ``numa_node``); None writes -1, as a one-node host."""


@dataclass(frozen=True, slots=True)
class SimulatedDevice:
    """Any other PCI function: a NIC sharing a group, a bridge, a non-QAT device."""

    bdf: Bdf
    device: int
    pci_class: int
    driver: str | None
    vendor: int = INTEL_VENDOR
    share_group_with: Bdf | None = None
    """Join the IOMMU group of this BDF (which must be built earlier) instead of a new one."""


@dataclass(frozen=True, slots=True)
class EscapingLink:
    """Replace one link of a device with one that leads outside the tree."""

    bdf: Bdf
    link: str
    """``driver``, ``iommu_group``... inside the device's directory; empty for the
    ``sys/bus/pci/devices/<bdf>`` entry itself."""
    target: str = "/"


@dataclass(frozen=True, slots=True)
class SimulatedNumaNode:
    cpus: str
    """``cpulist``, e.g. ``0-7``."""
    memory_mib: int


@dataclass(frozen=True, slots=True)
class SimulatedHost:
    pfs: tuple[SimulatedPf, ...]
    extra_devices: tuple[SimulatedDevice, ...] = ()
    iommu: bool = True
    """False leaves ``sys/kernel/iommu_groups`` empty, as a host booted without intel_iommu=on."""
    vfio_pci_loaded: bool = True
    denylist_disabled: bool | None = False
    """vfio-pci's ``disable_denylist`` parameter; None leaves the parameter file out."""
    kvm: bool = True
    memlock: int | None = 64 * 1024 * 1024
    """RLIMIT_MEMLOCK written to ``proc/self/limits``; None for unlimited."""
    escaping_links: tuple[EscapingLink, ...] = ()
    numa_nodes: tuple[SimulatedNumaNode, ...] = ()
    """``sys/devices/system/node/node<N>``; none left out, as on a host without NUMA in sysfs."""


def vf_addresses(pf: SimulatedPf) -> tuple[Bdf, ...]:
    """The VFs' BDFs: routing ID of the PF + First VF Offset + index (VF Stride 1)."""
    offset = 1 if _family(pf.family).generation >= 4 else 8
    base = (pf.bdf.bus << 8 | pf.bdf.slot << 3 | pf.bdf.function) + offset
    rids = range(base, base + pf.vfs)
    if rids and rids[-1] > 0xFFFF:
        raise ValueError(f"{pf.vfs} VFs of {pf.bdf} run past bus ff")
    return tuple(Bdf(pf.bdf.domain, rid >> 8, (rid >> 3) & 0x1F, rid & 7) for rid in rids)


def build_simulated_host(root: Path, spec: SimulatedHost) -> tuple[Bdf, ...]:
    """Lay the tree out under ``root`` (created if needed); returns every VF's BDF in spec order."""
    builder = _Builder(root, spec)
    vfs: list[Bdf] = []
    for pf in spec.pfs:
        vfs.extend(builder.add_pf(pf))
    for extra in spec.extra_devices:
        builder.add_device(
            extra.bdf,
            extra.vendor,
            extra.device,
            extra.pci_class,
            extra.driver,
            builder.group_of.get(extra.share_group_with) if extra.share_group_with else None,
        )
    builder.finish()
    return tuple(vfs)


def _family(name: str) -> QatFamily:
    for family in FAMILIES:
        if family.name == name:
            return family
    raise ValueError(f"unknown QAT family {name!r}")


class _Builder:
    def __init__(self, root: Path, spec: SimulatedHost) -> None:
        self.root = os.path.abspath(root)
        self.spec = spec
        self.group_of: dict[Bdf, int] = {}
        self.vfio_groups: set[int] = set()
        self.dirs: dict[Bdf, str] = {}
        self.made: set[str] = set()
        for folder in ("sys/bus/pci/devices", "sys/bus/pci/drivers", "sys/kernel/iommu_groups", "dev/vfio"):
            self._ensure(self._path(folder))

    def add_pf(self, pf: SimulatedPf) -> tuple[Bdf, ...]:
        family = _family(pf.family)
        pf_dir = self.add_device(pf.bdf, INTEL_VENDOR, family.pf_device, QAT_CLASS, pf_driver(family), None)
        vfs = vf_addresses(pf)
        _write(f"{pf_dir}/sriov_numvfs", str(pf.vfs))
        _write(f"{pf_dir}/sriov_totalvfs", str(max(pf.total_vfs, pf.vfs)))
        if family.generation >= 4:
            os.mkdir(f"{pf_dir}/qat")
            _write(f"{pf_dir}/qat/cfg_services", pf.services)
            _write(f"{pf_dir}/qat/state", pf.state)
        drivers = dict(pf.vf_drivers)
        node = "-1" if pf.numa_node is None else str(pf.numa_node)
        _write(f"{pf_dir}/numa_node", node)
        for index, vf in enumerate(vfs):
            driver = drivers.get(index, pf.vf_driver)
            vf_dir = self.add_device(vf, INTEL_VENDOR, family.vf_device, QAT_CLASS, driver, None, near=pf.bdf)
            _write(f"{vf_dir}/numa_node", node)
            _link(f"{pf_dir}/virtfn{index}", vf_dir)
            _link(f"{vf_dir}/physfn", pf_dir)
        return vfs

    def add_device(
        self,
        bdf: Bdf,
        vendor: int,
        device: int,
        pci_class: int,
        driver: str | None,
        group: int | None,
        near: Bdf | None = None,
    ) -> str:
        """Create one function's directory and links; ``near`` puts it beside that device (VFs)."""
        if bdf in self.dirs:
            raise ValueError(f"{bdf} is built twice")
        parent = (
            os.path.dirname(self.dirs[near]) if near else self._path(f"sys/devices/pci{bdf.domain:04x}:{bdf.bus:02x}")
        )
        folder = self.dirs[bdf] = f"{parent}/{bdf}"
        self._ensure(parent)
        os.mkdir(folder)
        for name, value in (("vendor", vendor), ("device", device)):
            _write(f"{folder}/{name}", f"0x{value:04x}")
        _write(f"{folder}/class", f"0x{pci_class:06x}")
        _write(f"{folder}/driver_override", "(null)")
        _link(self._path(f"sys/bus/pci/devices/{bdf}"), folder)
        if driver is not None:
            drv = self._path(f"sys/bus/pci/drivers/{driver}")
            self._ensure(drv)
            _link(f"{folder}/driver", drv)
            _link(f"{drv}/{bdf}", folder)
        if self.spec.iommu:
            self._join_group(bdf, folder, len(self.group_of) if group is None else group, driver)
        return folder

    def _join_group(self, bdf: Bdf, folder: str, group: int, driver: str | None) -> None:
        # Group numbers count devices, so a shared group leaves a gap, as real numbering does.
        self.group_of[bdf] = group
        members = self._path(f"sys/kernel/iommu_groups/{group}/devices")
        self._ensure(members)
        _link(f"{members}/{bdf}", folder)
        _link(f"{folder}/iommu_group", os.path.dirname(members))
        if driver == VFIO_PCI:
            self.vfio_groups.add(group)

    def finish(self) -> None:
        spec = self.spec
        for group in sorted(self.vfio_groups):
            _write(self._path(f"dev/vfio/{group}"), "")
        if spec.vfio_pci_loaded:
            _write(self._path("dev/vfio/vfio"), "")
            os.makedirs(self._path("sys/module/vfio_pci/parameters"))
            if spec.denylist_disabled is not None:
                _write(
                    self._path("sys/module/vfio_pci/parameters/disable_denylist"),
                    "Y" if spec.denylist_disabled else "N",
                )
        if spec.kvm:
            _write(self._path("dev/kvm"), "")
        limit = "unlimited" if spec.memlock is None else str(spec.memlock)
        os.makedirs(self._path("proc/self"), exist_ok=True)
        _write(
            self._path("proc/self/limits"),
            _LIMITS_HEADER + f"{'Max locked memory':<26}{limit:<21}{limit:<21}{'bytes':<10}",
        )
        for index, numa in enumerate(spec.numa_nodes):
            folder = self._path(f"sys/devices/system/node/node{index}")
            os.makedirs(folder)
            _write(f"{folder}/cpulist", numa.cpus)
            _write(f"{folder}/meminfo", f"Node {index} MemTotal:       {numa.memory_mib * 1024} kB")
        for escape in spec.escaping_links:
            folder = self.dirs[escape.bdf]
            path = f"{folder}/{escape.link}" if escape.link else self._path(f"sys/bus/pci/devices/{escape.bdf}")
            if os.path.lexists(path):
                os.remove(path)
            os.symlink(escape.target, path)

    def _ensure(self, folder: str) -> None:
        """``mkdir -p`` once per folder: most devices share theirs."""
        if folder not in self.made:
            os.makedirs(folder, exist_ok=True)
            self.made.add(folder)

    def _path(self, relative: str) -> str:
        return f"{self.root}/{relative}"


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, f"{text}\n".encode("ascii"))
    finally:
        os.close(fd)


def _link(path: str, target: str) -> None:
    """A relative link; both paths are absolute and normalised (``os.path.relpath`` is slow here)."""
    source, dest = path.split("/")[:-1], target.split("/")
    common = 0
    while common < min(len(source), len(dest)) and source[common] == dest[common]:
        common += 1
    os.symlink("/".join([".."] * (len(source) - common) + dest[common:]), path)
