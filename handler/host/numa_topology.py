"""Read the host's NUMA nodes and the node of every PCI function from sysfs under the host root.

Read once at start: which node a function hangs off, and a node's CPUs and memory, do not
change while the host runs. A VF created later simply has no known node, and the placement
policy treats it so.
"""

from __future__ import annotations

import re
from pathlib import Path

from handler.core.bdf import Bdf, parse_bdf
from handler.core.numa import NumaNode, NumaTopology, parse_cpu_list
from handler.host.host_tree import Escape, HostTree

NODES = "sys/devices/system/node"
DEVICES = "sys/bus/pci/devices"
_NODE_DIR = re.compile(r"^node(\d+)$")
_MEM_TOTAL = re.compile(r"MemTotal:\s+(\d+)\s*kB")


def read_numa_topology(host_root: Path) -> NumaTopology | None:
    """The nodes and device nodes; None when sysfs shows no NUMA nodes (or leads out of the root)."""
    tree = HostTree(host_root)
    try:
        nodes = tuple(_node(tree, int(m.group(1))) for m in map(_NODE_DIR.match, tree.listdir(tree.path(NODES))) if m)
        return NumaTopology(tuple(sorted(nodes, key=lambda n: n.id)), _device_nodes(tree)) if nodes else None
    except Escape:
        return None


def device_node(host_root: Path, bdf: Bdf) -> int | None:
    """One function's node, for the doctor; None when sysfs says -1 or nothing."""
    tree = HostTree(host_root)
    try:
        return _node_of(tree, str(bdf))
    except Escape:
        return None


def _node(tree: HostTree, node_id: int) -> NumaNode:
    folder = f"{NODES}/node{node_id}"
    cpus = parse_cpu_list(tree.read(tree.path(f"{folder}/cpulist")) or "")
    found = _MEM_TOTAL.search(tree.read(tree.path(f"{folder}/meminfo")) or "")  # MemTotal is the first line
    return NumaNode(node_id, cpus, int(found.group(1)) * 1024 if found else 0)


def _device_nodes(tree: HostTree) -> dict[Bdf, int]:
    nodes: dict[Bdf, int] = {}
    for name in tree.entries(tree.path(DEVICES)):
        bdf = parse_bdf(name)
        node = _node_of(tree, name) if bdf is not None else None
        if bdf is not None and node is not None:
            nodes[bdf] = node
    return nodes


def _node_of(tree: HostTree, name: str) -> int | None:
    text = tree.read(f"{tree.resolve(tree.path(f'{DEVICES}/{name}'))}/numa_node")
    return int(text) if text and text.isdigit() else None
