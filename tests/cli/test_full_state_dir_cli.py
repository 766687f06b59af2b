"""The agent on a state directory whose file system fills up, through the CLI: a real tmpfs
of 256 KiB, filled to the last block while a VMI is added and another removed.

While it is full, the new VMI waits (its VF cannot be recorded, so no guest gets it), and
every failure is one log line naming the file and the fix. Once space is back, with nothing
else changing, the new guest starts and the status and allocation files catch up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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


@pytest.fixture
def small_state_dir(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state"
    state.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(state)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"a small tmpfs for the state directory needs mount rights: {mounted.stderr.decode().strip()}")
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=True)


def fill(directory: Path) -> Path:
    """Write until the file system has no block left."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def wait_for(what: str, check: Callable[[], bool], agent: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert agent.poll() is None, f"the agent exited while waiting for: {what}"
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.05)


def log_lines(log: Path) -> list[str]:
    return log.read_text(errors="replace").splitlines()


def test_a_full_state_dir_holds_new_guests_back_and_everything_catches_up_once_space_is_back(
    tmp_path: Path, small_state_dir: Path
) -> None:
    build_simulated_host(tmp_path / "host", SimulatedHost(pfs=(SimulatedPf("C62x", Bdf(0, 0x3D, 0, 0), vfs=4),)))
    vmis, state, log = tmp_path / "vmis", small_state_dir, tmp_path / "agent.log"
    vmis.mkdir()
    for name in ("kept", "removed"):
        (vmis / f"{name}.yaml").write_text(manifest(name))
    argv = ["agent", "--connect", "test:///default", "--vmi-dir", str(vmis), "--state-dir", str(state)]
    argv += ["--host-root", str(tmp_path / "host"), "--on-stop", "keep", "--log-format", "json"]
    with log.open("wb") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "handler", *argv], stdout=out, stderr=subprocess.STDOUT, cwd=REPO
        )
    try:

        def phases() -> dict[str, str | None]:
            return {key: vmi.get("phase") for key, vmi in read_status_file(state).items()}

        wait_for(
            "both first VMIs Running", lambda: phases() == {"edge/kept": "Running", "edge/removed": "Running"}, agent
        )
        filler = fill(state)
        print("state directory full:", os.statvfs(state).f_bavail, "blocks free")
        (vmis / "added.yaml").write_text(manifest("added"))
        (vmis / "removed.yaml").unlink()

        def failed(event: str, vmi: str | None = None) -> bool:
            return any(event in line and (vmi is None or vmi in line) for line in log_lines(log))

        wait_for("the added VMI's allocation refused", lambda: failed('"sync failed"', "edge/added"), agent)
        wait_for("the status file refused", lambda: failed('"status file could not be written"'), agent)
        assert "edge/added" not in json.loads((state / "allocations.json").read_text())["allocations"]
        print("while full: the added VMI waits, and", state / "status.json", "still shows", phases())

        filler.unlink()  # nothing else changes from here on
        wait_for(
            "the files to catch up once space is back",
            lambda: phases() == {"edge/kept": "Running", "edge/added": "Running"},
            agent,
        )
        status = read_status_file(state)
        wait_for(
            "allocations.json to match the guests",
            lambda: (
                {
                    key: [d["bdf"] for d in entry["devices"]]
                    for key, entry in json.loads((state / "allocations.json").read_text())["allocations"].items()
                }
                == {key: [d["bdf"] for d in status[key]["devices"]] for key in status}
            ),
            agent,
        )
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
    lines = log_lines(log)
    assert all(line.startswith("{") for line in lines), [line for line in lines if not line.startswith("{")][:5]
    records = [json.loads(line) for line in lines]
    assert not [r for r in records if "crashed" in r["event"] or "exception" in r], "a crash, not one line"
    refused = next(r for r in records if r["event"] == "sync failed" and r.get("vmi") == "edge/added")
    assert refused["reason"] == "StateNotWritable"
    assert "allocations.json could not be written (No space left on device)" in refused["error"]
    assert "free space on its file system" in refused["error"]
    assert any(r["event"] == "status file written again" for r in records)
