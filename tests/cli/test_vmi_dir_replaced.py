"""The manifest directory replaced under a running agent, as configuration tools do it, typed
as a shell would: a new directory swapped in by two renames, and a symlinked --vmi-dir
re-pointed. The agent reads what the name leads to now: guests whose manifests left are
stopped, new ones start, and those in both keep running untouched. A symlinked --vmi-dir is
watched through the link (a file copied into its target is seen at once).

The real CLI on libvirt's test driver and a simulated host.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.baremetal.status_store import read_status_file
from handler.core.bdf import Bdf
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host

REPO = Path(__file__).resolve().parents[2]


def manifest(name: str) -> str:
    return f"""apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {{name: {name}, namespace: edge}}
spec:
  domain:
    memory: {{guest: 64Mi}}
    devices:
      qats: [{{name: qat0, deviceName: qat.intel.com/generic}}]
"""


def write_manifests(directory: Path, *names: str) -> Path:
    directory.mkdir()
    for name in names:
        (directory / f"{name}.yaml").write_text(manifest(name))
    return directory


class Agent:
    def __init__(self, tmp_path: Path, vmi_dir: Path) -> None:
        build_simulated_host(tmp_path / "host", SimulatedHost(pfs=(SimulatedPf("C62x", Bdf(0, 0x3D, 0, 0), vfs=4),)))
        self.state, self.log = tmp_path / "state", tmp_path / "agent.log"
        argv = ["agent", "--connect", "test:///default", "--vmi-dir", str(vmi_dir), "--state-dir", str(self.state)]
        argv += ["--host-root", str(tmp_path / "host"), "--on-stop", "keep", "--log-format", "json"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "handler", *argv], stdout=out, stderr=subprocess.STDOUT, cwd=REPO
            )

    def phases(self) -> dict[str, str | None]:
        return {key: vmi.get("phase") for key, vmi in read_status_file(self.state).items()}

    def wait_phases(self, wanted: dict[str, str], what: str) -> None:
        deadline = time.monotonic() + 60
        while (phases := self.phases()) != wanted:
            assert self.process.poll() is None, f"the agent exited while waiting for {what}"
            assert time.monotonic() < deadline, f"not within 60 s: {what}; status {phases}"
            time.sleep(0.05)

    def records(self) -> list[dict[str, object]]:
        lines = self.log.read_text(errors="replace").splitlines()
        assert all(line.startswith("{") for line in lines), [line for line in lines if not line.startswith("{")]
        return [json.loads(line) for line in lines]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        if agent.process.poll() is None:
            agent.stop()


def sh(command: str, cwd: Path) -> None:
    subprocess.run(["sh", "-ec", command], cwd=cwd, check=True)


def test_a_directory_swapped_in_by_two_renames_is_read_again(tmp_path: Path, agents: list[Agent]) -> None:
    write_manifests(tmp_path / "vmis", "kept", "removed")
    agents.append(agent := Agent(tmp_path, tmp_path / "vmis"))
    agent.wait_phases({"edge/kept": "Running", "edge/removed": "Running"}, "the first two VMIs")
    write_manifests(tmp_path / "vmis.new", "kept", "added")
    sh("mv vmis vmis.old && mv vmis.new vmis", cwd=tmp_path)
    agent.wait_phases({"edge/kept": "Running", "edge/added": "Running"}, "the swapped-in directory's VMIs")
    agent.stop()
    records = agent.records()
    assert any(r["event"] == "VMI directory replaced; reading it again" for r in records)
    kept = [r for r in records if r.get("vmi") == "edge/kept"]
    assert [r["reason"] for r in kept if r.get("reason") in ("Started", "ShuttingDown", "Stopped")] == ["Started"]
    removed = [r["reason"] for r in records if r.get("vmi") == "edge/removed" and "reason" in r]
    assert "ShuttingDown" in removed, removed


def test_a_symlinked_vmi_dir_is_watched_through_the_link_and_followed_when_re_pointed(
    tmp_path: Path, agents: list[Agent]
) -> None:
    write_manifests(tmp_path / "release-1", "kept", "removed")
    (tmp_path / "vmis").symlink_to("release-1")
    agents.append(agent := Agent(tmp_path, tmp_path / "vmis"))
    agent.wait_phases({"edge/kept": "Running", "edge/removed": "Running"}, "the first two VMIs")
    (tmp_path / "release-1" / "copied.yaml").write_text(manifest("copied"))
    agent.wait_phases(
        {"edge/kept": "Running", "edge/removed": "Running", "edge/copied": "Running"},
        "a manifest copied into the link's target",
    )
    write_manifests(tmp_path / "release-2", "kept", "added")
    sh("ln -s release-2 vmis.next && mv -T vmis.next vmis", cwd=tmp_path)
    agent.wait_phases({"edge/kept": "Running", "edge/added": "Running"}, "the re-pointed link's VMIs")
