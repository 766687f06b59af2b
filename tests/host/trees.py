"""Small host specs shared by the host tests."""

from __future__ import annotations

from pathlib import Path

from handler.core.bdf import Bdf
from handler.core.pci_function import VFIO_PCI
from handler.host.simulated_host import (
    BRIDGE_CLASS,
    SimulatedDevice,
    SimulatedHost,
    SimulatedPf,
    build_simulated_host,
)

C62X_PF = Bdf(0, 0x3D, 0, 0)
GEN4_PF = Bdf(0, 0x6B, 0, 0)
NIC = Bdf(0, 0x3D, 0, 1)
BRIDGE = Bdf(0, 0x3C, 0, 0)


def c62x(vfs: int = 4, vf_driver: str | None = VFIO_PCI, **more: object) -> SimulatedPf:
    return SimulatedPf("C62x", C62X_PF, vfs, vf_driver, **more)  # type: ignore[arg-type]


def gen4(vfs: int = 4, vf_driver: str | None = VFIO_PCI, **more: object) -> SimulatedPf:
    return SimulatedPf("4xxx", GEN4_PF, vfs, vf_driver, **more)  # type: ignore[arg-type]


def nic(driver: str | None = "i40e", share_group_with: Bdf | None = None) -> SimulatedDevice:
    return SimulatedDevice(NIC, 0x1572, 0x020000, driver, share_group_with=share_group_with)


def bridge(share_group_with: Bdf) -> SimulatedDevice:
    return SimulatedDevice(BRIDGE, 0x2030, BRIDGE_CLASS, "pcieport", share_group_with=share_group_with)


def build(root: Path, *pfs: SimulatedPf, **host: object) -> tuple[Bdf, ...]:
    return build_simulated_host(root, SimulatedHost(pfs, **host))  # type: ignore[arg-type]
