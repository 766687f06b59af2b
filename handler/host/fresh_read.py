"""One PCI function read fresh for a device check, in one lean pass over the usual sysfs shape.

A fresh check is some 20 system calls, and most of its CPU was the Python around them: the
general reader (``PciReader``) notes each read's escape on its own, keeps a scan's caches and
builds the group's member list. The usual VF has none of that to do: its bus entry leads to a
directory, nothing leads out of the root, it is alone in an existing IOMMU group. So this pass
reads exactly what ``PciReader.function`` reads, in the same order with the same ``HostTree``
calls, and gives up at the first thing that is not usual (a link out of the root or a loop, a
missing device, no group, another member in the group); ``PciReader`` then reads the function
again from the start. Either way the snapshot is the one a read from scratch gives (tests/
reliability/test_fuzz_fresh_checks.py compares them after generated changes to the host).
"""

from __future__ import annotations

from stat import S_ISDIR

from handler.core.bdf import Bdf
from handler.core.pci_function import PciFunction
from handler.host.host_tree import Escape, HostRoot, HostTree
from handler.host.pci import DEVICES, GROUPS, PciReader, parsed_bdf, read_facts, to_int


def read_fresh(root: HostRoot, bdf: Bdf) -> PciFunction:
    """``bdf`` as the host shows it now; ``PciReader`` reads whatever is not the usual shape."""
    try:
        usual = _usual(HostTree(root), bdf)
    except Escape:
        usual = None
    return usual if usual is not None else PciReader(root).function(bdf)


def _usual(tree: HostTree, bdf: Bdf) -> PciFunction | None:
    """The function when it has the usual shape, else None; ``Escape`` when a link leads out."""
    name = str(bdf)
    real, status = tree.lookup(tree.path(f"{DEVICES}/{name}"), link_expected=True)
    if status is None or not S_ISDIR(status.st_mode):
        return None
    read, link_name = tree.read_hex_in, tree.link_name_in
    vendor, device, pci_class = read(real, "vendor"), read(real, "device"), read(real, "class")
    driver, physfn = link_name(real, "driver"), link_name(real, "physfn")
    target = tree.link_target_in(real, "iommu_group")
    if target is None or not tree.lexists(target):
        return None
    group = to_int(target.rpartition("/")[2])
    if group is None:
        return None
    if any(member != name for member in tree.listdir(tree.path(f"{GROUPS}/{group}/devices"))):
        return None
    node = tree.lookup(tree.path(f"dev/vfio/{group}"))[1] is not None
    return PciFunction(
        bdf,
        read_facts(tree, iommu_on=True),
        present=True,
        vendor=vendor,
        device=device,
        pci_class=pci_class,
        driver=driver,
        iommu_group=group,
        physfn=parsed_bdf(physfn) if physfn else None,
        vfio_node=node,
    )
