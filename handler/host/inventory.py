"""What QAT hardware the host has: its PFs with their SR-IOV state, and the candidate VFs.

Candidates are QAT VFs by the built-in table plus anything the operator's permitted list
selects (even in replace mode the QAT VFs are listed, so the doctor can say why they are
not usable). Used by the bare-metal allocator, the doctor and ``HostInspector``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from handler.core.bdf import Bdf
from handler.core.pci_function import HostFacts, PciFunction
from handler.core.permitted_devices import PermittedDevices
from handler.core.qat_ids import QatFamily, family_of_pf, family_of_vf
from handler.host.host_tree import Escape, noting_escapes
from handler.host.pci import PciReader


@dataclass(frozen=True, slots=True)
class QatPf:
    bdf: Bdf
    family: QatFamily
    driver: str | None
    numvfs: int | None
    """``sriov_numvfs``: VFs created now."""
    totalvfs: int | None
    """``sriov_totalvfs``: the most the PF supports."""
    services: str | None
    """Gen4+ ``qat/cfg_services`` (``sym;asym``, ``dc``...); None before Gen4 or unreadable."""
    state: str | None
    """Gen4+ ``qat/state`` (``up``/``down``)."""
    escapes: tuple[str, ...] = ()
    """Links of this PF that lead outside the host root, not followed."""


@dataclass(frozen=True, slots=True)
class Inventory:
    facts: HostFacts
    pfs: tuple[QatPf, ...]
    vfs: tuple[PciFunction, ...]
    """Candidate functions, sorted by BDF."""
    escapes: tuple[str, ...] = ()
    """``/sys/bus/pci/devices`` entries that lead outside the host root, so were not read."""

    def vfs_of(self, pf: Bdf) -> tuple[PciFunction, ...]:
        return tuple(vf for vf in self.vfs if vf.physfn == pf)


def scan_inventory(reader: PciReader, permitted: PermittedDevices) -> Inventory:
    """One pass over ``/sys/bus/pci/devices`` with the reader's view of the host."""
    pfs: list[QatPf] = []
    vfs: list[PciFunction] = []
    escapes: list[str] = []
    for bdf in noting_escapes(escapes, reader.listing) or ():
        try:
            folder = reader.device_dir(bdf)
        except Escape as escape:
            escapes.append(escape.description)
            continue
        if folder is None:
            continue
        try:
            vendor, device = reader.ids(bdf, folder)
        except Escape as escape:
            escapes.append(escape.description)
            continue
        if vendor is None or device is None:
            continue
        pf_family = family_of_pf(vendor, device)
        if pf_family is not None:
            pfs.append(_read_pf(reader, bdf, folder, pf_family))
        elif family_of_vf(vendor, device) is not None or permitted.selects(vendor, device):
            vfs.append(reader.function(bdf))
    return Inventory(reader.facts, tuple(pfs), tuple(vfs), tuple(escapes))


def read_inventory(host_root: Path, permitted: PermittedDevices) -> Inventory:
    return scan_inventory(PciReader(host_root), permitted)


def _read_pf(reader: PciReader, bdf: Bdf, folder: str, family: QatFamily) -> QatPf:
    tree, escapes = reader.tree, list[str]()
    gen4 = family.generation >= 4

    def number(name: str) -> int | None:
        return noting_escapes(escapes, lambda: tree.read_int(f"{folder}/{name}"))

    def text(name: str) -> str | None:
        return noting_escapes(escapes, lambda: tree.read(f"{folder}/{name}")) if gen4 else None

    return QatPf(
        bdf,
        family,
        driver=noting_escapes(escapes, lambda: tree.link_name(f"{folder}/driver")),
        numvfs=number("sriov_numvfs"),
        totalvfs=number("sriov_totalvfs"),
        services=text("qat/cfg_services"),
        state=text("qat/state"),
        escapes=tuple(escapes),
    )
