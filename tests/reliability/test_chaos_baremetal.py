"""R1: ``kill -9`` the bare-metal agent at seeded random moments under churn, on a real libvirtd.

A private libvirtd (its own socket and state; the shared daemon is never touched) runs tiny
TCG guests for about 50 VMIs (30 to start with) that a seeded random user adds, removes, changes and powers off
from inside. The agent is killed at a random moment, sometimes the user acts while it is
down, and it is started again. After every restart the test waits for the agent to settle,
then checks the invariants in ``invariants.py``; it fails on the first one broken with the
seed that reproduces the schedule (``QAT_HANDLER_CHAOS_SEED``). Kills: 20 here,
``QAT_HANDLER_CHAOS_KILLS`` (``bench/chaos.py`` runs 100).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability import invariants
from tests.reliability.chaos_world import ChaosWorld, world_on_private_libvirtd

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("libvirtd") is None, reason="needs root and libvirtd"),
]

SEED = int(os.environ.get("QAT_HANDLER_CHAOS_SEED", "11"))
KILLS = int(os.environ.get("QAT_HANDLER_CHAOS_KILLS", "20"))
INITIAL_VMIS = int(os.environ.get("QAT_HANDLER_CHAOS_VMIS", "30"))
"""The churn adds more (a fifth of them asking for a VF), so about 50 VMIs pass through a run."""
SETTLE_TIMEOUT = 600.0
"""Generous: a settle takes seconds, but the machine may be shared and slow."""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[ChaosWorld]:
    with world_on_private_libvirtd(tmp_path, SEED) as world:
        yield world


def settle(world: ChaosWorld, round_name: str) -> float:
    """Wait until every invariant holds; fail with the last broken one and the seed."""
    started = time.monotonic()
    problem: str | None = "not checked yet"
    while time.monotonic() - started < SETTLE_TIMEOUT:
        assert world.agent is not None and world.agent.poll() is None, (
            f"seed {SEED}, {round_name}: the agent exited ({world.agent and world.agent.returncode}); "
            f"see {world.root}/agent-{world.starts}.log"
        )
        problem = invariants.broken(world)
        if problem is None:
            return time.monotonic() - started
        time.sleep(0.5)
    tail = "; ".join(world.log[-8:])
    pytest.fail(f"seed {SEED}, {round_name}: {problem} (last user actions: {tail})")


def test_killing_the_agent_at_random_moments_breaks_no_invariant(world: ChaosWorld) -> None:
    print(f"\nR1 bare metal: seed {SEED}, {KILLS} kills, {INITIAL_VMIS} VMIs to start with, on {world.uri}")
    print("  invariants: " + "; ".join(invariants.DESCRIPTIONS))
    rng = world.rng
    world.start_agent()
    for index in range(INITIAL_VMIS):
        world.add(index)
    next_index = INITIAL_VMIS
    print(f"  initial settle: {settle(world, 'initial start'):.1f} s")
    for kill in range(1, KILLS + 1):
        moment = rng.uniform(0.0, 2.5)
        deadline = time.monotonic() + moment
        actions = 0
        while time.monotonic() < deadline:
            next_index = world.churn(next_index)
            actions += 1
            time.sleep(rng.uniform(0.0, 0.4))
        world.kill_agent()
        while_down = rng.randint(0, 2)
        for _ in range(while_down):
            next_index = world.churn(next_index)
        world.start_agent()
        took = settle(world, f"kill {kill}")
        print(
            f"  kill {kill:3d} at {moment:.2f} s after {actions} action(s), {while_down} while down: "
            f"{len(world.vmis)} VMIs, {sum(v.stopped_inside for v in world.vmis.values())} powered off, "
            f"{len(world.removed)} removed; settled in {took:.1f} s, every invariant holds"
        )
    world.stop_agent()
