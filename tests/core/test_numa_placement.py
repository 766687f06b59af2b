"""NUMA placement: the pure decision, its rendering (golden, validated, defined), and sysfs reading."""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import libvirt
import pytest

from handler.core.bdf import Bdf
from handler.core.device_env import AssignedDevice
from handler.core.domain_xml import desired_digest, render_domain
from handler.core.numa import (
    UNPINNED,
    NumaNode,
    NumaPolicy,
    NumaTopology,
    Placement,
    cpu_list,
    parse_cpu_list,
    place,
)
from handler.core.refusal import Refusal
from handler.core.render_settings import RenderSettings
from handler.core.vmi import VMI
from handler.core.vmi_parse import parse_vmi
from handler.host.domain_templates import load_templates
from handler.host.numa_topology import read_numa_topology
from handler.host.simulated_host import SimulatedHost, SimulatedNumaNode, SimulatedPf, build_simulated_host

TEMPLATES = load_templates()

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden-numa" / "pinned-node1.domain.xml"
REGENERATE = os.environ.get("REGENERATE_GOLDEN") == "1"
UID = "6f1d3c52-0c56-4b8e-9a55-3c1d1d2a7b01"

PF0 = SimulatedPf("4xxx", Bdf(0, 0x6B, 0, 0), vfs=2, numa_node=0)
PF1 = SimulatedPf("4xxx", Bdf(0, 0xE8, 0, 0), vfs=2, numa_node=1)
TWO_NODES = (SimulatedNumaNode("0-3", 4096), SimulatedNumaNode("4-7", 4096))


def vmi(cores: int = 2, memory: str = "1Gi", uid: str = UID) -> VMI:
    return parse_vmi(
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "gw", "namespace": "numa", "uid": uid},
            "spec": {
                "domain": {
                    "cpu": {"cores": cores},
                    "memory": {"guest": memory},
                    "devices": {"qats": [{"name": "q0", "deviceName": "qat.intel.com/generic"}]},
                }
            },
        }
    )


def device(bdf: Bdf, name: str = "q0") -> AssignedDevice:
    return AssignedDevice(name=name, resource="qat.intel.com/generic", bdf=bdf, source="QAT0")


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, tuple[Bdf, ...]]:
    root = tmp_path / "host"
    vfs = build_simulated_host(root, SimulatedHost(pfs=(PF0, PF1), numa_nodes=TWO_NODES))
    return root, vfs


def test_sysfs_topology_is_read_with_each_functions_node(host: tuple[Path, tuple[Bdf, ...]]) -> None:
    root, vfs = host
    topology = read_numa_topology(root)
    assert topology is not None
    assert [(n.id, n.cpus, n.memory_bytes) for n in topology.nodes] == [
        (0, (0, 1, 2, 3), 4096 << 20),
        (1, (4, 5, 6, 7), 4096 << 20),
    ]
    assert [topology.device_nodes[vf] for vf in vfs] == [0, 0, 1, 1]


def test_a_host_without_numa_in_sysfs_has_no_topology(tmp_path: Path) -> None:
    build_simulated_host(tmp_path / "flat", SimulatedHost(pfs=(PF0,)))
    assert read_numa_topology(tmp_path / "flat") is None


@pytest.mark.parametrize("policy", [NumaPolicy.PREFERRED, NumaPolicy.STRICT])
def test_vfs_on_one_node_pin_the_guest_there(host: tuple[Path, tuple[Bdf, ...]], policy: NumaPolicy) -> None:
    root, vfs = host
    placement = place(vmi(), [device(vfs[2]), device(vfs[3], "q1")], read_numa_topology(root), policy)
    assert isinstance(placement, Placement)
    assert (placement.node, placement.cpuset) == (1, "4-7")
    assert placement.memory_mode == ("strict" if policy is NumaPolicy.STRICT else "preferred")
    assert placement.note is not None and placement.note[:2] == (True, "PinnedToDeviceNode")


def test_vfs_on_two_nodes_strict_refuses_in_one_line_and_preferred_runs_unpinned(
    host: tuple[Path, tuple[Bdf, ...]],
) -> None:
    root, vfs = host
    topology = read_numa_topology(root)
    both = [device(vfs[0]), device(vfs[2], "q1")]
    refused = place(vmi(), both, topology, NumaPolicy.STRICT)
    assert isinstance(refused, Refusal)
    line = refused.line()
    assert "\n" not in line and str(vfs[0]) in line and "node 1" in line and "--numa-placement" in line
    preferred = place(vmi(), both, topology, NumaPolicy.PREFERRED)
    assert isinstance(preferred, Placement) and preferred.node is None
    assert preferred.note is not None and preferred.note[:2] == (False, "DevicesOnSeveralNodes")


@pytest.mark.parametrize(("cores", "memory"), [(5, "1Gi"), (2, "5Gi")])
def test_a_guest_bigger_than_the_node(host: tuple[Path, tuple[Bdf, ...]], cores: int, memory: str) -> None:
    root, vfs = host
    topology = read_numa_topology(root)
    assert isinstance(place(vmi(cores, memory), [device(vfs[0])], topology, NumaPolicy.STRICT), Refusal)
    loose = place(vmi(cores, memory), [device(vfs[0])], topology, NumaPolicy.PREFERRED)
    assert isinstance(loose, Placement) and loose.node is None
    assert loose.note is not None and loose.note[1] == "NoRoomOnNode"


def test_nothing_to_decide(host: tuple[Path, tuple[Bdf, ...]]) -> None:
    root, vfs = host
    topology = read_numa_topology(root)
    one_node = NumaTopology((NumaNode(0, (0, 1), 1 << 30),), {vfs[0]: 0})
    assert place(vmi(), [device(vfs[0])], topology, NumaPolicy.NONE) == UNPINNED
    assert place(vmi(), [], topology, NumaPolicy.STRICT) == UNPINNED
    assert place(vmi(), [device(vfs[0])], None, NumaPolicy.STRICT) == UNPINNED
    assert place(vmi(), [device(vfs[0])], one_node, NumaPolicy.STRICT) == UNPINNED
    unknown = place(vmi(), [device(Bdf(0, 0x99, 0, 1))], topology, NumaPolicy.STRICT)
    assert isinstance(unknown, Refusal) and "0000:99:00.1" in unknown.line()


def test_cpu_lists_round_trip() -> None:
    assert cpu_list((0, 1, 2, 5, 7, 8)) == "0-2,5,7-8"
    assert parse_cpu_list("0-2,5,7-8\n") == (0, 1, 2, 5, 7, 8)
    assert parse_cpu_list("") == () and cpu_list(()) == ""


def test_pinning_changes_the_digest_only_when_pinned(host: tuple[Path, tuple[Bdf, ...]]) -> None:
    root, vfs = host
    settings = RenderSettings(templates=TEMPLATES)
    pinned = place(vmi(), [device(vfs[2])], read_numa_topology(root), NumaPolicy.PREFERRED)
    assert isinstance(pinned, Placement)
    plain = desired_digest(vmi(), [device(vfs[2])], settings)
    assert desired_digest(vmi(), [device(vfs[2])], settings, UNPINNED) == plain
    assert desired_digest(vmi(), [device(vfs[2])], settings, pinned) != plain


def test_pinned_domain_matches_golden_validates_and_defines(host: tuple[Path, tuple[Bdf, ...]]) -> None:
    root, vfs = host
    placement = place(vmi(), [device(vfs[2])], read_numa_topology(root), NumaPolicy.STRICT)
    assert isinstance(placement, Placement)
    xml = render_domain(
        vmi(),
        [device(vfs[2])],
        RenderSettings(log_dir="/var/lib/qat-handler/logs", templates=TEMPLATES),
        placement=placement,
    )
    if REGENERATE:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(xml)
    expected = GOLDEN.read_text()
    assert xml == expected, "\n".join(difflib.unified_diff(expected.splitlines(), xml.splitlines(), lineterm=""))
    assert '<vcpu placement="static" cpuset="4-7">2</vcpu>' in xml
    assert '<memory mode="strict" nodeset="1"/>' in xml
    if shutil.which("virt-xml-validate"):
        result = subprocess.run(["virt-xml-validate", str(GOLDEN), "domain"], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    connection = libvirt.open("test:///default")
    try:
        unique = xml.replace(UID, str(uuid.uuid4())).replace("<name>numa_gw</name>", "<name>numa_gw_golden</name>")
        domain = connection.defineXML(unique)
        assert "nodeset='1'" in domain.XMLDesc() or 'nodeset="1"' in domain.XMLDesc()
        domain.undefine()
    finally:
        connection.close()
