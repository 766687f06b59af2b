"""R3: the Kubernetes-mode agent under a misbehaving API server, with churn.

While a seeded random user creates, deletes and relabels VMIs (through its own client, which
is never faulted), the fake API server answers a share of the agent's requests with 500, 429
and Retry-After, 409 on writes, 410 on watches, slow answers or cut connections; watches are
also dropped and the history compacted at random. Then the faults stop. Invariant: once the
agent settles, the state (each VMI's phase, conditions, finalizer and devices, and the
domains) equals what a fresh agent builds from a clean relist; and it is the right state:
every live VMI Running with its finalizer, every deleted one gone with its domain.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from handler.core.kube_status import FINALIZER
from tests.kube.agent_harness import GROUP, VMIS, Cluster, eventually
from tests.support.fakekube.chaos import RandomFaults

pytestmark = pytest.mark.chaos

SEED = int(os.environ.get("QAT_HANDLER_CHAOS_SEED", "11"))
ROUNDS = int(os.environ.get("QAT_HANDLER_API_CHAOS_ROUNDS", "40"))
FAULT_RATE = 0.25
SETTLE = 60.0


def use_own_client(cluster: Cluster) -> None:
    """The test's calls get a User-Agent the fault injector spares; the agent keeps the other."""
    api = cluster.server.api_client()
    api.user_agent = "chaos-user"
    cluster.custom, cluster.core = client.CustomObjectsApi(api), client.CoreV1Api(api)


def snapshot(cluster: Cluster) -> dict[str, Any]:
    """What matters of the final state, without timestamps or event counts."""
    vmis = {}
    for obj in cluster.server.objects(VMIS, cluster.namespace, group=GROUP):
        meta, status = obj["metadata"], obj.get("status") or {}
        conditions = sorted((c["type"], c["status"], c.get("reason", "")) for c in status.get("conditions") or [])
        annotations = meta.get("annotations") or {}
        vmis[meta["name"]] = (
            status.get("phase"),
            conditions,
            sorted(meta.get("finalizers") or []),
            annotations.get("qat-handler/devices"),
            cluster.domain_running(meta["name"]),
        )
    domains = sorted(d.name() for d in cluster.libvirt_conn.listAllDomains(0) if d.name().startswith(cluster.namespace))
    return {"vmis": vmis, "domains": domains}


def settled(cluster: Cluster, what: str, right: Callable[[dict[str, Any]], str | None]) -> dict[str, Any]:
    """The snapshot once ``right`` finds nothing wrong with it and it has not changed for two
    seconds (a VMI whose calls kept failing may wait out its backoff first)."""
    deadline = time.monotonic() + SETTLE
    last, since = snapshot(cluster), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = snapshot(cluster)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 2.0 and right(now) is None:
            return now
    pytest.fail(f"seed {SEED}: {what} never settled: {right(last) or 'still changing'}; last state {last}")


def expected(live: set[str], deleted: set[str]) -> Callable[[dict[str, Any]], str | None]:
    """Every live VMI Running with its domain and the finalizer; every deleted one gone, domain too."""

    def wrong(state: dict[str, Any]) -> str | None:
        for name in sorted(live):
            phase, _conditions, finalizers, _devices, running = state["vmis"].get(name, (None, [], [], None, False))
            if phase != "Running" or not running or finalizers != [FINALIZER]:
                return f"{name} is {phase}, running={running}, finalizers={finalizers}"
        for name in sorted(deleted):
            if name in state["vmis"]:
                return f"{name} was deleted but is still there with finalizers {state['vmis'][name][2]}"
            if any(domain.endswith(f"_{name}") for domain in state["domains"]):
                return f"{name} was deleted but its domain is left"
        return None

    return wrong


def test_api_faults_under_churn_end_in_the_state_a_clean_relist_gives(cluster: Cluster) -> None:
    rng = random.Random(SEED)
    use_own_client(cluster)
    cluster.set_configmap_gates("QAT")
    faults = RandomFaults(random.Random(SEED + 1), FAULT_RATE)
    cluster.start_agent()
    cluster.server.random_faults(faults)
    print(f"\nR3: seed {SEED}, {ROUNDS} user actions, {FAULT_RATE:.0%} of the agent's API requests faulted")
    live: dict[str, str] = {}  # name -> BDF it was launched with
    deleted: set[str] = set()
    actions: list[str] = []
    for number in range(ROUNDS):
        free = [bdf for bdf in map(str, cluster.usable_vfs) if bdf not in live.values()]
        action = rng.choice(("create", "create", "delete", "relabel", "drop", "compact"))
        if action == "create" and free:
            name = f"vm-{number:03d}"
            vmi = cluster.create_vmi(name, grace=1)
            live[name] = rng.choice(free)
            cluster.launch(vmi, next(b for b in cluster.usable_vfs if str(b) == live[name]))
        elif action == "delete" and live:
            name = rng.choice(sorted(live))
            cluster.delete_vmi(name)
            deleted.add(name)
            del live[name]
        elif action == "relabel" and live:
            name = rng.choice(sorted(live))
            patch = {"metadata": {"labels": {"chaos-round": str(number)}}}
            cluster.custom.patch_namespaced_custom_object(GROUP, "v1", cluster.namespace, VMIS, name, patch)
        elif action == "drop":
            cluster.server.drop_watches()
        elif action == "compact":
            cluster.server.compact()
        else:
            continue
        actions.append(action)
        time.sleep(rng.uniform(0.0, 0.3))
    cluster.server.random_faults(None)
    print(f"  user actions: {dict(sorted((a, actions.count(a)) for a in set(actions)))}")
    print(f"  faults injected: {dict(sorted(faults.injected.items()))}")

    right = expected(set(live), deleted)
    after_chaos = settled(cluster, "the agent after the faults stopped", right)
    print(f"  settled: {len(live)} VMIs Running with the finalizer, {len(deleted)} deleted and gone with their domains")

    for node in list(cluster.nodes):
        cluster.stop_agent(node)
    cluster.start_agent()
    relisted = settled(cluster, "a fresh agent after a clean relist", right)
    assert relisted == after_chaos, f"seed {SEED}: the state after the faults differs from a clean relist"
    print("  a fresh agent's clean relist gives the same state")
    eventually(lambda: not cluster.server.internal_errors, what="no internal error in the fake")
