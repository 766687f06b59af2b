"""The agent on a state directory whose file system fills up, through the CLI: a real tmpfs
of 256 KiB, filled to the last block while a VMI is added and another removed.

While it is full, the new VMI waits (its VF cannot be recorded, so no guest gets it), and
every failure is one log line naming the file and the fix, and is counted in the metrics.
Once space is back, with nothing else changing, the new guest starts and the status and
allocation files catch up.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.baremetal.status_store import read_status_file
from tests.cli.bare_agent import BareAgent, manifest, write_manifests


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


def scrape(agent: BareAgent) -> dict[str, float]:
    """The agent's /metrics, as Prometheus reads it: series -> value."""
    served = next(r for r in agent.records() if r["event"] == "serving metrics and health")
    with urllib.request.urlopen(f"http://127.0.0.1:{served['port']}/metrics", timeout=10) as response:
        text = response.read().decode()
    series = (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in series}


def test_a_full_state_dir_holds_new_guests_back_and_everything_catches_up_once_space_is_back(
    tmp_path: Path, small_state_dir: Path
) -> None:
    state = small_state_dir
    write_manifests(tmp_path / "vmis", "kept", "removed")
    vmis = tmp_path / "vmis"
    agent = BareAgent(tmp_path, vmis, "--metrics-address", "127.0.0.1:0", state=state)
    try:
        agent.wait_phases({"edge/kept": "Running", "edge/removed": "Running"}, "both first VMIs Running")
        filler = fill(state)
        print("state directory full:", os.statvfs(state).f_bavail, "blocks free")
        (vmis / "added.yaml").write_text(manifest("added"))
        (vmis / "removed.yaml").unlink()

        def failed(event: str, vmi: str | None = None) -> bool:
            return any(event in line and (vmi is None or vmi in line) for line in agent.lines())

        agent.wait_for("the added VMI's allocation refused", lambda: failed('"sync failed"', "edge/added"))
        agent.wait_for("the status file refused", lambda: failed('"status file could not be written"'))
        assert "edge/added" not in json.loads((state / "allocations.json").read_text())["allocations"]
        metrics = scrape(agent)
        assert metrics['qat_handler_state_write_failures_total{file="allocations.json"}'] >= 1
        assert metrics['qat_handler_state_write_failures_total{file="status.json"}'] >= 1
        assert metrics['qat_handler_reconcile_errors_total{reason="StateNotWritable"}'] >= 1
        print("while full: the added VMI waits, and", state / "status.json", "still shows", agent.phases())

        filler.unlink()  # nothing else changes from here on
        agent.wait_phases({"edge/kept": "Running", "edge/added": "Running"}, "the files to catch up once space is back")
        status = read_status_file(state)

        def allocations() -> dict[str, list[str]]:
            records = json.loads((state / "allocations.json").read_text())["allocations"]
            return {key: [d["bdf"] for d in entry["devices"]] for key, entry in records.items()}

        guests = {key: [d["bdf"] for d in status[key]["devices"]] for key in status}
        agent.wait_for("allocations.json to match the guests", lambda: allocations() == guests)
    finally:
        agent.stop()
    records = agent.records()
    assert not [r for r in records if "crashed" in r["event"] or "exception" in r], "a crash, not one line"
    refused = next(r for r in records if r["event"] == "sync failed" and r.get("vmi") == "edge/added")
    assert refused["reason"] == "StateNotWritable"
    assert "allocations.json could not be written (No space left on device)" in refused["error"]
    assert "free space on its file system" in refused["error"]
    assert any(r["event"] == "status file written again" for r in records)
