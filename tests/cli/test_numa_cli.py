"""NUMA through the command line: the agent's flag and the doctor's per-VF node."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from handler.core.bdf import Bdf
from handler.host.simulated_host import SimulatedHost, SimulatedNumaNode, SimulatedPf, build_simulated_host

REPO = Path(__file__).resolve().parents[2]


def qat_handler(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handler", *argv], capture_output=True, text=True, timeout=60, cwd=REPO
    )


def test_doctor_shows_the_numa_node_of_each_vf_on_a_two_node_host(tmp_path: Path) -> None:
    pfs = (
        SimulatedPf("4xxx", Bdf(0, 0x6B, 0, 0), vfs=1, numa_node=0),
        SimulatedPf("4xxx", Bdf(0, 0xE8, 0, 0), vfs=1, numa_node=1),
    )
    nodes = (SimulatedNumaNode("0-3", 4096), SimulatedNumaNode("4-7", 4096))
    build_simulated_host(tmp_path / "host", SimulatedHost(pfs=pfs, numa_nodes=nodes))
    result = qat_handler("doctor", "--host-root", str(tmp_path / "host"), "--connect", "test:///default")
    lines = {line.split(": ", 1)[0]: line for line in result.stdout.splitlines()}
    assert "NUMA node 0" in lines["✔ VF 0000:6b:00.1"], result.stdout
    assert "NUMA node 1" in lines["✔ VF 0000:e8:00.1"], result.stdout


def test_doctor_leaves_the_node_out_on_a_one_node_host(tmp_path: Path) -> None:
    build_simulated_host(tmp_path / "host", SimulatedHost(pfs=(SimulatedPf("4xxx", Bdf(0, 0x6B, 0, 0), vfs=1),)))
    result = qat_handler("doctor", "--host-root", str(tmp_path / "host"), "--connect", "test:///default")
    assert "VF 0000:6b:00.1" in result.stdout and "NUMA" not in result.stdout


def test_agent_help_documents_the_numa_policy_and_refuses_an_unknown_one() -> None:
    assert "--numa-placement {none,preferred,strict}" in " ".join(qat_handler("agent", "--help").stdout.split())
    bad = qat_handler("agent", "--numa-placement", "sideways")
    assert bad.returncode == 2 and "invalid choice: 'sideways'" in bad.stderr and "Traceback" not in bad.stderr
