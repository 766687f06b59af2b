"""May this PCI function be passed to a VM? Rules as data, first failing rule wins.

Each rule looks at a ``PciFunction`` snapshot and the requested resource name and returns
a ``Violation`` or None. ``check_device`` turns the first violation into a one-line
``Refusal`` naming the BDF, the rule and the fix. Rules that need more data (the device
already in another domain, the pod-resources assignment) are built by factories that close
over that data and are appended to ``host_rules(...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from handler.core.pci_function import VFIO_PCI, PciFunction
from handler.core.permitted_devices import PermitMode, PermittedDevices
from handler.core.qat_ids import family_of_pf
from handler.core.refusal import Refusal


@dataclass(frozen=True, slots=True)
class Violation:
    problem: str
    fix: str


@dataclass(frozen=True, slots=True)
class DeviceRule:
    name: str
    test: Callable[[PciFunction, str | None], Violation | None]
    """Called with the snapshot and the requested resource name (None: any resource)."""
    reason: str = "DeviceRejected"


def check_device(function: PciFunction, resource: str | None, rules: Sequence[DeviceRule]) -> Refusal | None:
    for rule in rules:
        violation = rule.test(function, resource)
        if violation is not None:
            problem = f"{violation.problem} (rule {rule.name})"
            return Refusal(rule.reason, str(function.bdf), problem, violation.fix)
    return None


def host_rules(permitted: PermittedDevices) -> tuple[DeviceRule, ...]:
    """The rules that need only the host's sysfs, in the order an operator should fix them."""
    return (
        DeviceRule("exists", _exists),
        DeviceRule("inside-host-root", _inside_host_root),
        DeviceRule("permitted", _permitted_by(permitted)),
        # Before the binding rule: without an IOMMU vfio-pci cannot bind, so that is the root cause.
        DeviceRule("iommu-on", _iommu_on),
        DeviceRule("vfio-bound", _vfio_bound),
        DeviceRule("iommu-group-viable", _group_viable),
    )


def _exists(fn: PciFunction, _resource: str | None) -> Violation | None:
    if fn.present:
        return None
    return Violation(
        f"does not exist (/sys/bus/pci/devices/{fn.bdf} is missing)",
        "check the device plugin's allocation and that SR-IOV VFs are created (sriov_numvfs)",
    )


def _inside_host_root(fn: PciFunction, _resource: str | None) -> Violation | None:
    escapes = fn.host.escapes + fn.escapes
    if not escapes:
        return None
    return Violation(
        f"has a link leading outside the host root ({escapes[0]})",
        "mount the host's /sys and /dev under --host-root, or repair the link",
    )


def _permitted_by(permitted: PermittedDevices) -> Callable[[PciFunction, str | None], Violation | None]:
    def test(fn: PciFunction, resource: str | None) -> Violation | None:
        if fn.vendor is None or fn.device is None:
            return Violation("has unreadable vendor and device IDs", "check that sysfs is mounted intact")
        if permitted.permits(fn.vendor, fn.device, resource):
            return None
        return _not_permitted(fn, resource, permitted)

    return test


def _not_permitted(fn: PciFunction, resource: str | None, permitted: PermittedDevices) -> Violation:
    entries = permitted.entries_for(fn.vendor or 0, fn.device or 0)
    if entries:
        names = ", ".join(sorted({entry.resource_name for entry in entries}))
        return Violation(
            f"is {fn.ids}, permitted for {names} but not for {resource}",
            f"request one of {names}, or add {{pciVendorSelector: {fn.ids}, resourceName: {resource}}}"
            " to permittedHostDevices.pciHostDevices",
        )
    pf = family_of_pf(fn.vendor or 0, fn.device or 0)
    table = "the permitted-devices list" if permitted.mode is PermitMode.REPLACE else "the QAT VF table"
    what = f"is a {pf.name} QAT physical function, not a VF" if pf else f"is {fn.ids}, which is not in {table}"
    return Violation(
        what,
        "hand the agent a QAT VF, or add"
        f" {{pciVendorSelector: {fn.ids}, resourceName: ...}} to permittedHostDevices.pciHostDevices",
    )


def _iommu_on(fn: PciFunction, _resource: str | None) -> Violation | None:
    if fn.host.iommu_enabled:
        return None
    return Violation(
        "cannot use vfio: the IOMMU is off (/sys/kernel/iommu_groups is empty)",
        "enable VT-d in firmware and boot with intel_iommu=on (and iommu=pt)",
    )


def _vfio_bound(fn: PciFunction, _resource: str | None) -> Violation | None:
    if fn.driver == VFIO_PCI:
        return None
    now = f"is bound to host driver {fn.driver}" if fn.driver else "is bound to no driver"
    unbind = f", unbind it from {fn.driver}" if fn.driver else ""
    bind = (
        f"echo vfio-pci > /sys/bus/pci/devices/{fn.bdf}/driver_override{unbind},"
        f" then echo {fn.bdf} > /sys/bus/pci/drivers_probe"
    )
    family = fn.family
    if family is not None and family.on_vfio_denylist and fn.host.denylist_disabled is not True:
        return Violation(
            f"{now}; the kernel's vfio-pci denylist blocks {family.name} VFs",
            f"boot with vfio-pci.disable_denylist=1, then {bind}",
        )
    if not fn.host.vfio_pci_loaded:
        return Violation(f"{now} and the vfio-pci module is not loaded", f"modprobe vfio-pci, then {bind}")
    return Violation(f"{now}, not vfio-pci", bind)


def _group_viable(fn: PciFunction, _resource: str | None) -> Violation | None:
    group = fn.iommu_group
    if group is None:
        return Violation("has no IOMMU group", "check that VT-d covers this device (firmware DMAR tables, ACS)")
    blockers = [peer for peer in fn.group_peers if peer.blocks_vfio]
    if blockers:
        held = ", ".join(f"{peer.bdf} ({peer.driver})" for peer in blockers)
        return Violation(
            f"shares IOMMU group {group} with {held}; every member must be on vfio-pci or driverless",
            f"unbind {held} from its host driver (or bind it to vfio-pci),"
            " or use a slot whose group holds only the VF (ACS)",
        )
    if not fn.vfio_node:
        return Violation(
            f"has no /dev/vfio/{group} node",
            "mount the host's /dev/vfio under --host-root; vfio-pci creates the node when it binds",
        )
    return None
