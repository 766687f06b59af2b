"""The bare-metal agent on a simulated two-node host: guests pinned beside their VFs, or refused
(strict) or run unpinned with a NUMAAligned=False condition (preferred) when they cannot be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml

from handler.baremetal.allocator import VfAllocator
from handler.baremetal.node import BareMetalNode
from handler.baremetal.status_store import read_status_file
from handler.core.bdf import Bdf
from handler.core.numa import NumaPolicy
from handler.core.render_settings import RenderSettings
from handler.core.stop_policy import StopPolicy
from handler.core.vmi_parse import parse_vmi
from handler.host.domain_templates import load_templates
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.simulated_host import SimulatedHost, SimulatedNumaNode, SimulatedPf, build_simulated_host
from handler.settings import AgentSettings
from tests.integration.agent_harness import wait_until

NAMESPACE = "numa-agent"


def manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "domain": {
                "cpu": {"cores": 2},
                "memory": {"guest": "256Mi"},
                "devices": {"qats": [{"name": f"q{i}", "deviceName": "qat.intel.com/generic"} for i in range(2)]},
            }
        },
    }


def conditions(state: Path, key: str) -> dict[str, tuple[str, str]]:
    entry = read_status_file(state).get(key) or {}
    return {c["type"]: (str(c["status"]), c.get("reason", "")) for c in entry.get("conditions", [])}


@pytest.mark.parametrize("policy", [NumaPolicy.STRICT, NumaPolicy.PREFERRED])
def test_agent_pins_aligned_guests_and_handles_split_ones_by_policy(tmp_path: Path, policy: NumaPolicy) -> None:
    host = tmp_path / "host"
    pf0 = SimulatedPf("4xxx", Bdf(0, 0x6B, 0, 0), vfs=3, numa_node=0)
    pf1 = SimulatedPf("4xxx", Bdf(0, 0xE8, 0, 0), vfs=3, numa_node=1)
    vfs = build_simulated_host(
        host, SimulatedHost(pfs=(pf0, pf1), numa_nodes=(SimulatedNumaNode("0-3", 4096), SimulatedNumaNode("4-7", 4096)))
    )
    vmis = tmp_path / "vmis"
    vmis.mkdir()
    for name, pair in (("aligned", (vfs[3], vfs[4])), ("split", (vfs[0], vfs[5]))):
        (vmis / f"{name}.yaml").write_text(yaml.safe_dump(manifest(name)))
        (vmis / f"{name}.env").write_text(f"QAT0={pair[0]}\nQAT1={pair[1]}\n")
    state = tmp_path / "state"
    settings = AgentSettings(
        connect="test:///default",
        vmi_dir=vmis,
        state_dir=state,
        host_root=host,
        render=RenderSettings(log_dir=str(state / "logs"), templates=load_templates()),
        on_stop="keep",
        numa_placement=policy,
    )
    keeper = libvirt.open("test:///default")
    node = BareMetalNode(settings, FreshDeviceChecks(host))
    node.start()
    try:
        wait_until(
            "the NUMA outcome in status.json",
            lambda: conditions(state, f"{NAMESPACE}/aligned").get("NUMAAligned") == ("True", "PinnedToDeviceNode"),
            20,
        )
        xml = keeper.lookupByName(f"{NAMESPACE}_aligned").XMLDesc()
        assert "cpuset='4-7'" in xml and "nodeset='1'" in xml
        split = f"{NAMESPACE}/split"
        if policy is NumaPolicy.STRICT:
            wait_until(
                "the NUMA outcome in status.json",
                lambda: conditions(state, split).get("Synchronized") == ("False", "NumaPlacement"),
                20,
            )
            assert read_status_file(state)[split]["phase"] == "Scheduled"
            message = next(
                c["message"] for c in read_status_file(state)[split]["conditions"] if c["type"] == "Synchronized"
            )
            assert "\n" not in message and "several NUMA nodes" in message and "--numa-placement" in message
        else:
            wait_until(
                "the NUMA outcome in status.json",
                lambda: conditions(state, split).get("NUMAAligned") == ("False", "DevicesOnSeveralNodes"),
                20,
            )
            assert read_status_file(state)[split]["phase"] == "Running"
            assert "numatune" not in keeper.lookupByName(f"{NAMESPACE}_split").XMLDesc()
    finally:
        node.shutdown(StopPolicy.KEEP)
        for domain in keeper.listAllDomains():
            if domain.name().startswith(f"{NAMESPACE}_"):
                if domain.isActive():
                    domain.destroy()
                domain.undefine()
        keeper.close()


@pytest.mark.parametrize(
    ("vfs_per_node", "expected"),
    [
        ((1, 2), ["0000:e8:00.1", "0000:e8:00.2"]),  # BDF order alone would split them across the nodes
        ((1, 1), ["0000:6b:00.1", "0000:e8:00.1"]),  # no node can serve both: still allocated, unaligned
    ],
)
def test_allocator_takes_a_vmis_vfs_from_one_node_when_it_can(
    tmp_path: Path, vfs_per_node: tuple[int, int], expected: list[str]
) -> None:
    pfs = (
        SimulatedPf("4xxx", Bdf(0, 0x6B, 0, 0), vfs=vfs_per_node[0], numa_node=0),
        SimulatedPf("4xxx", Bdf(0, 0xE8, 0, 0), vfs=vfs_per_node[1], numa_node=1),
    )
    nodes = (SimulatedNumaNode("0-3", 4096), SimulatedNumaNode("4-7", 4096))
    build_simulated_host(tmp_path / "host", SimulatedHost(pfs=pfs, numa_nodes=nodes))
    document = manifest("pair")
    document["metadata"]["uid"] = "00000000-0000-4000-8000-000000000002"
    picked = VfAllocator(tmp_path / "state", tmp_path / "host").allocate(parse_vmi(document), lambda _bdf: False)
    assert [str(device.bdf) for device in picked] == expected
