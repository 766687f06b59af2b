"""The real ``qat-handler agent`` CLI on bare metal, for tests that change things under it as
an operator would: libvirt's test driver, a simulated host with four C62x VFs, JSON logs in
a file, and the status file read as ``qat-handler status`` reads it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from handler.baremetal.status_store import read_status_file
from handler.core.bdf import Bdf
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host

REPO = Path(__file__).resolve().parents[2]
WAIT = 60.0
"""Generous bound for any one step on a loaded machine; never a timing claim."""


def manifest(name: str, memory: str = "64Mi") -> str:
    return f"""apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {{name: {name}, namespace: edge}}
spec:
  domain:
    memory: {{guest: {memory}}}
    devices:
      qats: [{{name: qat0, deviceName: qat.intel.com/generic}}]
"""


def write_manifests(directory: Path, *names: str) -> Path:
    directory.mkdir()
    for name in names:
        (directory / f"{name}.yaml").write_text(manifest(name))
    return directory


class BareAgent:
    def __init__(self, tmp_path: Path, vmi_dir: Path, *extra: str, state: Path | None = None) -> None:
        build_simulated_host(tmp_path / "host", SimulatedHost(pfs=(SimulatedPf("C62x", Bdf(0, 0x3D, 0, 0), vfs=4),)))
        self.state, self.log = state or tmp_path / "state", tmp_path / "agent.log"
        argv = ["agent", "--connect", "test:///default", "--vmi-dir", str(vmi_dir), "--state-dir", str(self.state)]
        argv += ["--host-root", str(tmp_path / "host"), "--on-stop", "keep", "--log-format", "json", *extra]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "handler", *argv], stdout=out, stderr=subprocess.STDOUT, cwd=REPO
            )

    def phases(self) -> dict[str, str | None]:
        return {key: vmi.get("phase") for key, vmi in read_status_file(self.state).items()}

    def wait_phases(self, wanted: dict[str, str], what: str) -> None:
        self.wait_for(what, lambda: self.phases() == wanted)

    def wait_for(self, what: str, check: Any) -> None:
        deadline = time.monotonic() + WAIT
        while not check():
            assert self.process.poll() is None, f"the agent exited while waiting for {what}"
            assert time.monotonic() < deadline, f"not within {WAIT:.0f} s: {what}; status {self.phases()}"
            time.sleep(0.05)

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def records(self) -> list[dict[str, Any]]:
        """Every log line as JSON: a line that is not (a traceback) fails the test here."""
        lines = self.lines()
        assert all(line.startswith("{") for line in lines), [line for line in lines if not line.startswith("{")]
        return [json.loads(line) for line in lines]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
