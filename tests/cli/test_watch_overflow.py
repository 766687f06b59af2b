"""Manifests the directory watch never reported: the kernel's inotify queue made small
(``fs.inotify.max_queued_events`` = 16 while the agent starts its watch, then put back) and
200 manifests written in a burst, so that most of their events are dropped, as a burst of
thousands does with the default queue. The agent's sweep at each resync finds them all.

The real CLI on libvirt's test driver; --resync-seconds 2 so the sweep comes soon.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.bare_agent import BareAgent

QUEUE = Path("/proc/sys/fs/inotify/max_queued_events")
BURST = 200
DEVICELESS = """apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {{name: {name}, namespace: edge}}
spec:
  domain:
    memory: {{guest: 64Mi}}
"""


def test_manifests_whose_events_the_kernel_dropped_are_found_by_the_sweep(tmp_path: Path) -> None:
    vmis = tmp_path / "vmis"
    vmis.mkdir()
    try:
        default = QUEUE.read_text()
        QUEUE.write_text("16\n")
    except OSError as error:
        pytest.skip(f"{QUEUE} cannot be set here: {error}")
    try:  # an inotify instance keeps the queue size it was made with
        agent = BareAgent(tmp_path, vmis, "--resync-seconds", "2")
        agent.wait_for("the watch to start", lambda: any('"agent started"' in line for line in agent.lines()))
    finally:
        QUEUE.write_text(default)
    try:
        names = [f"m{i:03}" for i in range(BURST)]
        for name in names:
            (vmis / f"{name}.yaml").write_text(DEVICELESS.format(name=name))
        agent.wait_phases({f"edge/{name}": "Running" for name in names}, f"all {BURST} VMIs")
    finally:
        agent.stop()
    lines = agent.lines()
    assert any("Inotify queue overflowed" in line for line in lines), "the queue never overflowed: nothing tested"
    assert any('"manifest changes the directory watch missed; reading them"' in line for line in lines)
