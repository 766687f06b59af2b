"""A snapshot of one PCI function as the host shows it, and the host-wide facts around it.

``handler.host.pci`` fills these from sysfs; the device rules read only these values, so they
are pure and can be tested without a filesystem.
"""

from __future__ import annotations

from dataclasses import dataclass

from handler.core.bdf import Bdf
from handler.core.qat_ids import QatFamily, family_of_vf

VFIO_PCI = "vfio-pci"
_BRIDGE_CLASS = 0x0604


def vendor_device(vendor: int | None, device: int | None) -> str:
    """``8086:37c9``, the form of ``lspci -n`` and of KubeVirt's ``pciVendorSelector``."""
    if vendor is None or device is None:
        return "unknown vendor:device"
    return f"{vendor:04x}:{device:04x}"


@dataclass(frozen=True, slots=True)
class HostFacts:
    iommu_enabled: bool
    """``/sys/kernel/iommu_groups`` has entries; empty means the IOMMU is off."""
    vfio_pci_loaded: bool
    """``/sys/module/vfio_pci`` exists (built in or loaded)."""
    denylist_disabled: bool | None
    """vfio-pci's ``disable_denylist`` parameter; None when it cannot be read (old kernel, no module)."""
    escapes: tuple[str, ...] = ()
    """Host-wide links (``/sys/kernel``, ``/dev/vfio``...) that lead outside the host root."""


@dataclass(frozen=True, slots=True)
class GroupMember:
    """Another device in the same IOMMU group: vfio needs it on vfio-pci, driverless, or a bridge."""

    bdf: Bdf
    vendor: int | None
    device: int | None
    pci_class: int | None
    driver: str | None

    @property
    def is_bridge(self) -> bool:
        return self.pci_class is not None and self.pci_class >> 8 == _BRIDGE_CLASS

    @property
    def blocks_vfio(self) -> bool:
        return self.driver not in (None, VFIO_PCI) and not self.is_bridge


@dataclass(frozen=True, slots=True)
class PciFunction:
    bdf: Bdf
    host: HostFacts
    present: bool
    """``/sys/bus/pci/devices/<bdf>`` exists."""
    escapes: tuple[str, ...] = ()
    """Links met while reading that lead outside the host root, as ``path -> target``; never followed."""
    vendor: int | None = None
    device: int | None = None
    pci_class: int | None = None
    driver: str | None = None
    iommu_group: int | None = None
    physfn: Bdf | None = None
    """The PF of an SR-IOV VF; None for a PF or a plain device."""
    vfio_node: bool = False
    """``/dev/vfio/<group>`` exists."""
    group_peers: tuple[GroupMember, ...] = ()
    """The other members of the IOMMU group, by BDF."""

    @property
    def ids(self) -> str:
        return vendor_device(self.vendor, self.device)

    @property
    def family(self) -> QatFamily | None:
        """The QAT family when this is a QAT VF by the built-in table."""
        if self.vendor is None or self.device is None:
            return None
        return family_of_vf(self.vendor, self.device)
