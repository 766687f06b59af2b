"""Read PCI functions from sysfs under the host root into ``PciFunction`` snapshots.

A ``PciReader`` is one pass over the host: it caches what it resolved, so make a new one
to see changes. Ordinary bad input (missing files, garbage, links out of the root) ends up
in the snapshot, never as an exception.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from stat import S_ISDIR

from handler.core.bdf import Bdf, parse_bdf
from handler.core.pci_function import GroupMember, HostFacts, PciFunction
from handler.host.host_root import HostRoot
from handler.host.host_tree import Escape, HostTree, noting_escapes

DEVICES = "sys/bus/pci/devices"
GROUPS = "sys/kernel/iommu_groups"
VFIO_MODULE = "sys/module/vfio_pci"
_FLAG = {"Y": True, "1": True, "N": False, "0": False}
"""A boolean module parameter as sysfs shows it."""


def read_pci_function(host_root: Path | HostRoot, bdf: Bdf) -> PciFunction:
    """One function, read fresh (a ``HostRoot`` shares what earlier reads resolved, as for ``HostTree``)."""
    return PciReader(host_root).function(bdf)


class PciReader:
    def __init__(self, host_root: Path | HostRoot) -> None:
        self.tree = HostTree(host_root)
        self._facts: HostFacts | None = None
        self._devices: dict[str, bool] | None = None
        """/sys/bus/pci/devices, listed only for a scan: a single read need not list 1,000 entries."""
        self._folders: dict[Bdf, str | None] = {}
        self._ids: dict[Bdf, tuple[int | None, int | None]] = {}
        self._members: dict[str, GroupMember] = {}
        self._peer_escapes: dict[int, tuple[str, ...]] = {}

    @property
    def facts(self) -> HostFacts:
        return self._facts_knowing(iommu_on=False)

    def _facts_knowing(self, iommu_on: bool) -> HostFacts:
        """Host facts, read once; a device with a group proves the IOMMU on without listing groups."""
        if self._facts is None:
            self._facts = _read_facts(self.tree, iommu_on)
        return self._facts

    def listing(self) -> tuple[Bdf, ...]:
        """Every function under /sys/bus/pci/devices, sorted; ``Escape`` if that directory leads out."""
        if self._devices is None:
            self._devices = self.tree.entries(self.tree.path(DEVICES))
        return tuple(sorted(bdf for bdf in map(parse_bdf, self._devices) if bdf is not None))

    def device_dir(self, bdf: Bdf) -> str | None:
        """The real directory of a function; None if absent; ``Escape`` if it leads out of the root."""
        if bdf not in self._folders:
            name = str(bdf)
            if self._devices is not None and name not in self._devices:
                real = None
            else:
                real, status = self.tree.lookup(self.tree.path(f"{DEVICES}/{name}"), link_expected=True)
                real = real if status is not None and S_ISDIR(status.st_mode) else None
            if real is not None and self._devices is not None:
                self.tree.entries(os.path.dirname(real))  # a scan: siblings (a PF's VFs) resolve from here
            self._folders[bdf] = real
        return self._folders[bdf]

    def ids(self, bdf: Bdf, folder: str) -> tuple[int | None, int | None]:
        """Vendor and device ID of the function in ``folder``; the scan and the snapshot share them."""
        if bdf not in self._ids:
            read = self.tree.read_hex_in
            self._ids[bdf] = (read(folder, "vendor"), read(folder, "device"))
        return self._ids[bdf]

    def function(self, bdf: Bdf) -> PciFunction:
        try:
            real = self.device_dir(bdf)
        except Escape as escape:
            return PciFunction(bdf, self.facts, present=True, escapes=(escape.description,))
        if real is None:
            return PciFunction(bdf, self.facts, present=False)
        escapes: list[str] = []
        tree = self.tree  # ``real`` is a real directory: files and links are read in it directly
        vendor, device = noting_escapes(escapes, lambda: self.ids(bdf, real)) or (None, None)
        pci_class = noting_escapes(escapes, tree.read_hex_in, real, "class")
        driver = noting_escapes(escapes, tree.link_name_in, real, "driver")
        physfn = noting_escapes(escapes, tree.link_name_in, real, "physfn")
        group = noting_escapes(escapes, self._group, real)
        peers: tuple[GroupMember, ...] = ()
        node = False
        if group is not None:
            peers = self._peers(group, str(bdf))
            escapes.extend(self._peer_escapes[group])
            node = bool(noting_escapes(escapes, lambda: self._vfio_node(group)))
        return PciFunction(
            bdf,
            self._facts_knowing(iommu_on=group is not None),
            present=True,
            escapes=tuple(escapes),
            vendor=vendor,
            device=device,
            pci_class=pci_class,
            driver=driver,
            iommu_group=group,
            physfn=_parsed_bdf(physfn) if physfn else None,
            vfio_node=node,
            group_peers=peers,
        )

    def _group(self, folder: str) -> int | None:
        """The IOMMU group the function's link names, if that group exists: a link to a missing
        group directory is no group (and proves nothing about the IOMMU being on)."""
        target = self.tree.link_target_in(folder, "iommu_group")
        number = _to_int(target.rpartition("/")[2]) if target is not None else None
        return number if target is not None and self.tree.lexists(target) else None

    def _vfio_node(self, group: int) -> bool:
        nodes, name = self.tree.path("dev/vfio"), str(group)
        if self._devices is not None:  # a scan lists /dev/vfio once instead of looking up every node
            listed = self.tree.entries(nodes)
            if name not in listed or not listed[name]:
                return name in listed
        return self.tree.lookup(f"{nodes}/{name}")[1] is not None

    def _peers(self, group: int, own: str) -> tuple[GroupMember, ...]:
        """The group's members other than ``own``; a group's link escapes are kept per group."""
        base = self.tree.path(f"{GROUPS}/{group}/devices")
        escapes: list[str] = []
        members: list[GroupMember] = []
        for name in noting_escapes(escapes, self.tree.listdir, base) or []:
            try:
                member = self._member(base, name) if name != own else None
            except Escape as escape:
                escapes.append(escape.description)
                continue
            members.extend([member] if member is not None else [])
        self._peer_escapes[group] = tuple(escapes)
        return tuple(sorted(members, key=lambda m: m.bdf))

    def _member(self, base: str, name: str) -> GroupMember | None:
        cached = self._members.get(name)
        if cached is not None:
            return cached
        bdf = parse_bdf(name)
        if bdf is None:
            return None
        real = self.tree.resolve(f"{base}/{name}")
        member = GroupMember(
            bdf,
            vendor=self.tree.read_hex(f"{real}/vendor"),
            device=self.tree.read_hex(f"{real}/device"),
            pci_class=self.tree.read_hex(f"{real}/class"),
            driver=self.tree.link_name(f"{real}/driver"),
        )
        self._members[name] = member
        return member


def _read_facts(tree: HostTree, iommu_on: bool) -> HostFacts:
    escapes: list[str] = []
    groups = iommu_on or noting_escapes(escapes, lambda: tree.has_entries(tree.path(GROUPS)))
    module = noting_escapes(escapes, lambda: tree.lookup(tree.path(VFIO_MODULE))[1])
    loaded = module is not None and S_ISDIR(module.st_mode)
    denylist = noting_escapes(escapes, tree.read, tree.path(f"{VFIO_MODULE}/parameters/disable_denylist"))
    return HostFacts(
        iommu_enabled=bool(groups),
        vfio_pci_loaded=loaded,
        denylist_disabled=_FLAG.get(denylist or ""),
        escapes=tuple(escapes),
    )


@functools.lru_cache(maxsize=4096)
def _parsed_bdf(name: str) -> Bdf | None:
    """``parse_bdf``, kept per name (a PF's VFs all name it); the link itself is read every time."""
    return parse_bdf(name)


def _to_int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None
