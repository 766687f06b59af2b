"""``qat-handler doctor``: can this node pass QAT VFs to VMs, and if not, what to fix.

Everything is read under the host root; libvirt is reached only through the probe the
caller passes, so this module needs no libvirt binding.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from handler.core.bdf import Bdf
from handler.core.doctor_report import Check, Report
from handler.core.pci_function import VFIO_PCI, HostFacts, PciFunction
from handler.core.permitted_devices import PermittedDevices
from handler.core.refusal import Refusal
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.host_tree import Escape, HostTree, noting_escapes
from handler.host.inspector import HostInspector
from handler.host.inventory import Inventory, QatPf
from handler.host.numa_topology import read_numa_topology

LibvirtProbe = Callable[[], tuple[bool, str]]
"""Returns (reachable, detail), e.g. ``(True, "libvirt 9.0.0 at qemu:///system")``."""


def run_doctor(
    host_root: Path,
    libvirt_probe: LibvirtProbe,
    permitted: PermittedDevices | None = None,
    domain_type: str = "kvm",
) -> Report:
    """Every check, in the order an operator should work through them."""
    inspector = HostInspector(FreshDeviceChecks(host_root, permitted))
    inventory = inspector.snapshot()
    refusals = {vf.bdf: inspector.check(vf.bdf) for vf in inventory.vfs}
    tree = HostTree(host_root)
    topology = read_numa_topology(host_root)
    nodes = dict(topology.device_nodes) if topology is not None and len(topology.nodes) > 1 else {}
    return Report(
        (
            _inside_root(inventory),
            _iommu(inventory.facts, tree),
            _vfio_module(inventory.facts),
            _denylist(inventory),
            _kvm(tree, domain_type),
            _libvirt(libvirt_probe),
            _memlock(tree),
            _devices_found(inventory),
            *(_pf(pf) for pf in inventory.pfs),
            *(_vf(vf, refusals[vf.bdf], nodes.get(vf.bdf)) for vf in inventory.vfs),
            _usable(inventory, refusals),
        )
    )


def _inside_root(inventory: Inventory) -> Check:
    escapes = list(dict.fromkeys([*inventory.facts.escapes, *inventory.escapes]))
    found = [*(e for pf in inventory.pfs for e in pf.escapes), *(e for vf in inventory.vfs for e in vf.escapes)]
    escapes.extend(e for e in found if e not in escapes)
    if not escapes:
        return Check("host root", True, True, "every link read stays inside the host root")
    return Check(
        "host root",
        False,
        True,
        f"{len(escapes)} link(s) lead outside the host root, e.g. {escapes[0]}",
        "mount the host's /sys and /dev under --host-root (links must stay inside it)",
    )


def _iommu(facts: HostFacts, tree: HostTree) -> Check:
    if facts.iommu_enabled:
        groups = noting_escapes([], lambda: tree.entries(tree.path("sys/kernel/iommu_groups"))) or {}
        return Check("IOMMU", True, True, f"enabled, {len(groups)} IOMMU groups")
    return Check(
        "IOMMU",
        False,
        True,
        "off: /sys/kernel/iommu_groups is empty",
        "enable VT-d in firmware and boot with intel_iommu=on (and iommu=pt)",
    )


def _vfio_module(facts: HostFacts) -> Check:
    if facts.vfio_pci_loaded:
        return Check("vfio-pci module", True, True, "loaded (/sys/module/vfio_pci)")
    return Check("vfio-pci module", False, True, "not loaded (/sys/module/vfio_pci is missing)", "modprobe vfio-pci")


def _denylist(inventory: Inventory) -> Check:
    blocked = [
        vf for vf in inventory.vfs if vf.family is not None and vf.family.on_vfio_denylist and vf.driver != VFIO_PCI
    ]
    setting = {True: "Y", False: "N", None: "unknown"}[inventory.facts.denylist_disabled]
    if not blocked or inventory.facts.denylist_disabled:
        detail = f"no pre-Gen4 VF is held back (disable_denylist={setting})"
        return Check("vfio-pci denylist", True, False, detail)
    families = ", ".join(sorted({vf.family.name for vf in blocked if vf.family}))
    return Check(
        "vfio-pci denylist",
        False,
        False,
        f"{len(blocked)} {families} VF(s) not on vfio-pci, which denylists them (disable_denylist={setting})",
        "boot with vfio-pci.disable_denylist=1, then bind the VFs to vfio-pci via driver_override",
    )


def _kvm(tree: HostTree, domain_type: str) -> Check:
    required = domain_type == "kvm"
    try:
        fd = os.open(tree.resolve(tree.path("dev/kvm")), os.O_RDWR | os.O_CLOEXEC)
    except (OSError, Escape) as error:
        why = error.description if isinstance(error, Escape) else (error.strerror or str(error))
        fix = "load kvm_intel (VT-x on in firmware) and let the agent open /dev/kvm read-write"
        return Check("KVM", False, required, f"/dev/kvm cannot be opened read-write: {why}", fix)
    os.close(fd)
    return Check("KVM", True, required, "/dev/kvm opens read-write")


def _libvirt(probe: LibvirtProbe) -> Check:
    try:
        reachable, detail = probe()
    except Exception as error:  # a probe is the caller's code; its failure is this check's finding
        reachable, detail = False, f"probe failed: {error}"
    fix = "start libvirtd (and virtlogd), and check --connect"
    return Check("libvirt", reachable, True, detail, "" if reachable else fix)


def _memlock(tree: HostTree) -> Check:
    return Check(
        "RLIMIT_MEMLOCK",
        True,
        False,
        f"{_memlock_limit(tree)} for this process; vfio pins all guest RAM, and libvirt raises QEMU's limit to"
        " guest RAM + 1 GiB for domains with a hostdev when it runs as root",
    )


def _devices_found(inventory: Inventory) -> Check:
    if inventory.pfs or inventory.vfs:
        detail = f"{len(inventory.pfs)} QAT PF(s), {len(inventory.vfs)} candidate VF(s)"
        return Check("QAT devices", True, True, detail)
    return Check(
        "QAT devices",
        False,
        True,
        "no QAT PF or permitted device under /sys/bus/pci/devices",
        "check the card and its host driver (qat_4xxx, qat_c62x...), or list the device in permittedHostDevices",
    )


def _pf(pf: QatPf) -> Check:
    detail = f"{pf.family.name} (Gen{pf.family.generation}), driver {pf.driver or 'none'}"
    detail += f", {pf.numvfs}/{pf.totalvfs} VFs"
    fixes: list[str] = []
    if not pf.numvfs:
        fixes.append(f"echo {pf.totalvfs or 16} > /sys/bus/pci/devices/{pf.bdf}/sriov_numvfs")
    if pf.family.generation >= 4:
        detail += f", services {pf.services}, state {pf.state}"
        if pf.state != "up":
            fixes.append(f"echo up > /sys/bus/pci/devices/{pf.bdf}/qat/state")
    return Check(f"PF {pf.bdf}", not fixes, False, detail, "; ".join(fixes))


def _vf(vf: PciFunction, refusal: Refusal | None, numa_node: int | None) -> Check:
    kind = vf.family.name if vf.family else vf.ids
    group = "none" if vf.iommu_group is None else vf.iommu_group
    found = f"{kind}, driver {vf.driver or 'none'}, IOMMU group {group}"
    if numa_node is not None:  # shown on multi-node hosts, where placement depends on it
        found += f", NUMA node {numa_node}"
    if refusal is None:
        return Check(f"VF {vf.bdf}", True, False, f"{found}, usable")
    return Check(f"VF {vf.bdf}", False, False, f"{found}, not usable: it {refusal.problem}", refusal.fix)


def _usable(inventory: Inventory, refusals: dict[Bdf, Refusal | None]) -> Check:
    usable = sum(1 for refusal in refusals.values() if refusal is None)
    detail = f"{usable} of {len(inventory.vfs)} candidate VF(s) usable"
    fix = "fix the VF findings above" if inventory.vfs else "create VFs: write the VF count to each PF's sriov_numvfs"
    return Check("usable VFs", usable > 0, True, detail, "" if usable else fix)


def _memlock_limit(tree: HostTree) -> str:
    """The soft "Max locked memory" of ``proc/self/limits``, readable."""
    try:
        text = tree.read(tree.path("proc/self/limits")) or ""
    except Escape:
        text = ""
    for line in text.splitlines():
        if line.startswith("Max locked memory"):
            soft = line[len("Max locked memory") :].split()[0]
            return _size(int(soft)) if soft.isdigit() else soft
    return "unknown (cannot read /proc/self/limits)"


def _size(value: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size and value % size == 0:
            return f"{value // size} {unit}"
    return f"{value} bytes"
