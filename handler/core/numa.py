"""Placing a guest on the NUMA node of its VFs: a pure decision from static host facts.

A QAT VF's DMA crosses the socket interconnect when the guest's memory sits on the other
socket. With a policy other than ``none``, a guest whose VFs all sit on one node gets its
vCPUs pinned to that node's CPUs and its memory bound to it. The facts used (which node a
PCI function hangs off, each node's CPUs and memory) do not change while a host runs, so
the decision is the same on every reconcile and never marks a running guest stale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from handler.core.bdf import Bdf
from handler.core.device_env import AssignedDevice
from handler.core.refusal import Refusal
from handler.core.vmi import VMI

CONDITION = "NUMAAligned"


class NumaPolicy(StrEnum):
    NONE = "none"
    """Leave placement to libvirt and the kernel."""
    PREFERRED = "preferred"
    """Pin when the VFs share a node with room for the guest; otherwise run unpinned and say why."""
    STRICT = "strict"
    """Pin, or refuse to start the guest."""


@dataclass(frozen=True, slots=True)
class NumaNode:
    id: int
    cpus: tuple[int, ...]
    memory_bytes: int
    """MemTotal of the node: what a guest bound to it can ever have."""


@dataclass(frozen=True, slots=True)
class NumaTopology:
    nodes: tuple[NumaNode, ...]
    device_nodes: Mapping[Bdf, int] = field(default_factory=dict)
    """The node each known PCI function hangs off (sysfs ``numa_node``); absent when unknown."""

    def node(self, node_id: int) -> NumaNode | None:
        return next((node for node in self.nodes if node.id == node_id), None)


@dataclass(frozen=True, slots=True)
class Placement:
    node: int | None = None
    """The node the guest is bound to; None when it runs unpinned."""
    cpuset: str = ""
    memory_mode: str = ""
    """libvirt ``<numatune><memory mode>``: ``strict`` or ``preferred``."""
    note: tuple[bool, str, str] | None = None
    """(aligned, reason, message) for the NUMAAligned condition; None on single-node hosts."""

    def fingerprint(self) -> str:
        return "" if self.node is None else f"{self.node}|{self.cpuset}|{self.memory_mode}"


UNPINNED = Placement()


def place(
    vmi: VMI, devices: Sequence[AssignedDevice], topology: NumaTopology | None, policy: NumaPolicy
) -> Placement | Refusal:
    """Where the guest goes, or (strict policy only) why it cannot start."""
    if policy is NumaPolicy.NONE or topology is None or len(topology.nodes) < 2 or not devices:
        return UNPINNED
    unknown = [device.bdf for device in devices if device.bdf not in topology.device_nodes]
    if unknown:
        return _unaligned(
            policy, "NodeUnknown", f"has VF {unknown[0]}, which reports no NUMA node", "check the VF in sysfs"
        )
    nodes = {topology.device_nodes[device.bdf] for device in devices}
    if len(nodes) > 1:
        listed = ", ".join(f"{device.bdf} on node {topology.device_nodes[device.bdf]}" for device in devices)
        return _unaligned(policy, "DevicesOnSeveralNodes", f"has VFs on several NUMA nodes ({listed})", _ONE_NODE)
    node = topology.node(nodes.pop())
    if node is None or not node.cpus:
        return _unaligned(
            policy, "NodeUnknown", "has its VFs on a NUMA node with no CPUs listed", "check the host's sysfs"
        )
    if vmi.cores > len(node.cpus) or vmi.memory_bytes > node.memory_bytes:
        problem = (
            f"({vmi.cores} vCPU(s), {vmi.memory_bytes >> 20} MiB) does not fit NUMA node {node.id} "
            f"({len(node.cpus)} CPU(s), {node.memory_bytes >> 20} MiB)"
        )
        return _unaligned(policy, "NoRoomOnNode", problem, "make the guest smaller, or use VFs of a bigger node")
    mode = "strict" if policy is NumaPolicy.STRICT else "preferred"
    message = f"vCPUs pinned to CPUs {cpu_list(node.cpus)} and memory to NUMA node {node.id}, beside its VFs"
    return Placement(node.id, cpu_list(node.cpus), mode, (True, "PinnedToDeviceNode", message))


_ONE_NODE = "give the VMI VFs of one node (or use --numa-placement preferred to run it unpinned)"


def _unaligned(policy: NumaPolicy, reason: str, problem: str, fix: str) -> Placement | Refusal:
    if policy is NumaPolicy.STRICT:
        return Refusal("NumaPlacement", "the guest", problem, f"{fix}; the agent runs with --numa-placement strict")
    return Placement(note=(False, reason, f"running unpinned: the guest {problem}"))


def cpu_list(cpus: Sequence[int]) -> str:
    """``(0, 1, 2, 5)`` -> ``0-2,5``: the cpuset syntax of libvirt and sysfs."""
    runs: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in runs)


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """``0-2,5`` -> ``(0, 1, 2, 5)``; garbage parts are skipped (sysfs is trusted but may be empty)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            cpus.extend(range(int(low), int(high or low) + 1))
    return tuple(sorted(set(cpus)))
