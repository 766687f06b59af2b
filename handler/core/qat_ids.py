"""The Intel QuickAssist PCI IDs the agent knows, by family."""

from __future__ import annotations

from dataclasses import dataclass

INTEL_VENDOR = 0x8086


@dataclass(frozen=True, slots=True)
class QatFamily:
    name: str
    pf_device: int
    vf_device: int
    generation: int
    """QAT hardware generation; Gen4 and later expose ``cfg_services`` on the PF."""
    on_vfio_denylist: bool
    """The kernel's vfio-pci refuses these unless booted with ``vfio-pci.disable_denylist=1``."""


FAMILIES: tuple[QatFamily, ...] = (
    QatFamily("DH895xCC", 0x0435, 0x0443, 1, True),
    QatFamily("C62x", 0x37C8, 0x37C9, 1, True),
    QatFamily("C3xxx", 0x19E2, 0x19E3, 1, True),
    QatFamily("200xx", 0x18EE, 0x18EF, 1, False),
    QatFamily("D15xx", 0x6F54, 0x6F55, 1, False),
    QatFamily("C4xxx", 0x18A0, 0x18A1, 2, False),
    QatFamily("4xxx", 0x4940, 0x4941, 4, False),
    QatFamily("401xx", 0x4942, 0x4943, 4, False),
    QatFamily("402xx", 0x4944, 0x4945, 4, False),
    QatFamily("420xx", 0x4946, 0x4947, 4, False),
    QatFamily("6xxx", 0x4948, 0x4949, 6, False),
)

_BY_VF = {family.vf_device: family for family in FAMILIES}
_BY_PF = {family.pf_device: family for family in FAMILIES}


def family_of_vf(vendor: int, device: int) -> QatFamily | None:
    return _BY_VF.get(device) if vendor == INTEL_VENDOR else None


def family_of_pf(vendor: int, device: int) -> QatFamily | None:
    return _BY_PF.get(device) if vendor == INTEL_VENDOR else None
