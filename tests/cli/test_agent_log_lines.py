"""The agent's JSON log at info, as the README's Logs section says: one line per VMI per
transition (its Created and Started events), the libvirt calls behind them at debug.
The real CLI on libvirt's test driver, a simulated host with one VF."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from handler.baremetal.status_store import read_status_file
from handler.core.bdf import Bdf
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host

REPO = Path(__file__).resolve().parents[2]
MANIFEST = """apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: logged, namespace: demo}
spec:
  domain:
    memory: {guest: 64Mi}
    devices:
      qats: [{name: qat0, deviceName: qat.intel.com/generic}]
"""


def run_agent_until_running(tmp_path: Path, level: str) -> list[dict[str, object]]:
    vfs = build_simulated_host(tmp_path / "host", SimulatedHost(pfs=(SimulatedPf("C62x", Bdf(0, 0x3D, 0, 0), vfs=1),)))
    vmis = tmp_path / "vmis"
    vmis.mkdir()
    (vmis / "logged.env").write_text(f"QAT0={vfs[0]}\n")
    (vmis / "logged.yaml").write_text(MANIFEST)
    argv = ["agent", "--connect", "test:///default", "--vmi-dir", str(vmis), "--state-dir", str(tmp_path / "state")]
    argv += ["--host-root", str(tmp_path / "host"), "--on-stop", "keep", "--log-format", "json", "--log-level", level]
    agent = subprocess.Popen([sys.executable, "-m", "handler", *argv], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while read_status_file(tmp_path / "state").get("demo/logged", {}).get("phase") != "Running":
            assert agent.poll() is None, "the agent exited"
            assert time.monotonic() < deadline, "the VMI never reached Running"
            time.sleep(0.1)
    finally:
        agent.send_signal(signal.SIGTERM)
        out, _ = agent.communicate(timeout=30)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_at_info_each_transition_is_one_line(tmp_path: Path) -> None:
    lines = [line for line in run_agent_until_running(tmp_path, "info") if line.get("vmi") == "demo/logged"]
    assert [(line["level"], line["reason"]) for line in lines] == [("info", "Created"), ("info", "Started")], lines
    assert lines[0]["event"] == "defined domain demo_logged with QAT 0000:3d:01.0"
    assert all(line["bdfs"] == ["0000:3d:01.0"] and line["domain"] == "demo_logged" for line in lines)


def test_at_debug_the_libvirt_calls_are_there_too(tmp_path: Path) -> None:
    lines = [line for line in run_agent_until_running(tmp_path, "debug") if line.get("vmi") == "demo/logged"]
    events = [line["event"] for line in lines]
    assert "domain defined" in events and "domain started" in events, events
    assert events.index("domain started") < events.index("started domain demo_logged with QAT 0000:3d:01.0")
