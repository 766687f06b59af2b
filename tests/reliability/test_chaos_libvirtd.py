"""R2: restart libvirtd under the bare-metal agent during churn, and once stop it for 10 s.

On a private libvirtd (never the shared one). Checked each time: the agent's
``qat_handler_libvirt_connected`` and ``/readyz`` go down with libvirtd and come back once it
answers again (within 5 s is the goal; the wait is bounded at 5 s plus a margin for a loaded
machine, and the measured figure is printed), a guest that powered itself off while libvirtd
was away is then seen Succeeded, a manifest removed meanwhile loses its domain, and nothing
is marked Failed because of the outage: every invariant of R1 holds once the agent settles.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.reliability.chaos_world import ChaosWorld, world_on_private_libvirtd
from tests.reliability.libvirtd_outage import power_off_behind_libvirt, wait_probe
from tests.reliability.test_chaos_baremetal import settle
from tests.support.http_probe import free_port
from tests.support.private_libvirtd import PrivateLibvirtd

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("libvirtd") is None, reason="needs root and libvirtd"),
]

SEED = int(os.environ.get("QAT_HANDLER_CHAOS_SEED", "11"))
RECONNECT_SECONDS = 5.0
"""Issue 11: the agent is connected again within 5 s of libvirtd answering."""
LOAD_MARGIN = 10.0
"""Added to every wait so a slow machine cannot fail the test; the figure is printed."""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[ChaosWorld]:
    with world_on_private_libvirtd(tmp_path, SEED) as world:
        yield world


def outage(world: ChaosWorld, port: int, down_seconds: float, label: str) -> float:
    """Stop libvirtd; while it is away a guest powers off and a manifest goes; start it again.
    Returns the agent's reconnect time, measured from libvirtd answering."""
    rng = world.rng
    running = [n for n, v in sorted(world.vmis.items()) if not v.qats and not v.stopped_inside]
    victim = rng.choice(running)
    world.conn.close()
    daemon = PrivateLibvirtd.serving(world.uri)
    daemon.stop()
    wait_probe(port, 0.0, 503, timeout=30 + LOAD_MARGIN)
    power_off_behind_libvirt(world.uri, world.domain_name(victim))
    world.vmis[victim].stopped_inside = True
    world.remove()
    world.add(101 + 5 * len(world.log))
    time.sleep(down_seconds)
    daemon.start()  # returns once libvirtd answers
    reconnect = wait_probe(port, 1.0, 200, timeout=RECONNECT_SECONDS + LOAD_MARGIN)
    world.conn = libvirt.open(world.uri)
    took = settle(world, f"{label} (guest {victim} powered off while libvirtd was away)")
    print(
        f"  {label}: down {down_seconds:.0f} s; metric and /readyz followed; reconnected {reconnect:.1f} s after "
        f"libvirtd answered; {victim} seen off, {world.log[-2]}, {world.log[-1]}; settled in {took:.1f} s"
    )
    return reconnect


def test_the_agent_rides_out_libvirtd_restarts(world: ChaosWorld) -> None:
    port = free_port()
    print(f"\nR2: seed {SEED}, private libvirtd {world.uri}")
    world.start_agent(metrics_port=port, resync_seconds=None)
    for index in (i for i in range(1, 16) if i % 5):  # device-less guests only (every fifth asks for a VF)
        world.add(index)
    print(f"  initial settle: {settle(world, 'initial start'):.1f} s")
    times = []
    for label, down in (("restart", 0.0), ("stop for 10 s", 10.0)):
        for _ in range(3):
            world.churn(1000 + 5 * len(world.log))
        times.append(outage(world, port, down, label))
    # The bound asserted is RECONNECT_SECONDS + LOAD_MARGIN (in wait_probe): the suite asserts no
    # timing. The figures are printed against the 5 s of issue 11.
    print(f"  reconnects: {', '.join(f'{t:.1f} s' for t in times)} (goal: within {RECONNECT_SECONDS:.0f} s)")
    world.stop_agent()
