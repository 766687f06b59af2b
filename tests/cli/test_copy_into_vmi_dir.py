"""The README's way of adding a guest on bare metal, typed as written:
``cp my-vmi.yaml my-vmi.env /etc/qat-handler/vmis/`` into a running agent's directory.

The env file names the host's last VF, so a guest started before the env file was read would
show the allocator's pick (the first free VF) instead. The real CLI on libvirt's test driver
and a simulated host. With one ``cp`` the race is narrow, so this test shows the README's
command working rather than proving the rule; tests/baremetal/test_complete_files.py proves
the rules, on a fake clock and on the real watcher.
"""

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
metadata: {name: my-vmi, namespace: edge}
spec:
  domain:
    memory: {guest: 64Mi}
    devices:
      qats: [{name: qat0, deviceName: qat.intel.com/generic}]
"""


def test_copying_a_manifest_and_its_env_file_together_starts_the_guest_on_the_env_files_vf(tmp_path: Path) -> None:
    vfs = build_simulated_host(tmp_path / "host", SimulatedHost(pfs=(SimulatedPf("C62x", Bdf(0, 0x3D, 0, 0), vfs=4),)))
    vmis, source = tmp_path / "vmis", tmp_path / "src"
    vmis.mkdir()
    source.mkdir()
    (source / "my-vmi.yaml").write_text(MANIFEST)
    (source / "my-vmi.env").write_text(f"QAT0={vfs[-1]}\n")
    state = tmp_path / "state"
    argv = ["agent", "--connect", "test:///default", "--vmi-dir", str(vmis), "--state-dir", str(state)]
    argv += ["--host-root", str(tmp_path / "host"), "--on-stop", "keep", "--log-format", "json"]
    agent = subprocess.Popen([sys.executable, "-m", "handler", *argv], stdout=subprocess.PIPE, text=True, cwd=REPO)
    early: list[str] = []
    try:
        assert agent.stdout is not None
        for line in agent.stdout:  # the directory is being watched once the first sync is done
            early.append(line)
            if '"first sync done"' in line:
                break
        deadline = time.monotonic() + 60
        subprocess.run(["cp", "my-vmi.yaml", "my-vmi.env", str(vmis)], cwd=source, check=True)
        while (status := read_status_file(state).get("edge/my-vmi", {})).get("phase") != "Running":
            assert agent.poll() is None and time.monotonic() < deadline, f"never Running: {status}"
            time.sleep(0.05)
    finally:
        agent.send_signal(signal.SIGTERM)
        out, _ = agent.communicate(timeout=30)
    assert [d["bdf"] for d in status["devices"]] == [str(vfs[-1])]
    lines = [json.loads(line) for line in [*early, *out.splitlines()] if line.startswith("{")]
    mine = [line for line in lines if line.get("vmi") == "edge/my-vmi"]
    assert not [line for line in mine if line["event"] == "VFs allocated" or line.get("reason") == "RestartRequired"]
    assert not [line for line in mine if line["level"] in ("warning", "error")], mine
