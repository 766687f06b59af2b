"""R1 with ``--kubernetes``: ``kill -9`` the agent at seeded random moments while VMIs are created
and deleted through the fake API server, on a private libvirtd with tiny TCG guests.

Invariant, after every restart has settled: no VMI is stuck with the finalizer after its
domain is gone, and no domain is left after its VMI is gone; every live VMI is Running with
its finalizer and its guest runs. Kills: ``QAT_HANDLER_CHAOS_KILLS`` // 2 (10 here).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from kubernetes import client

from handler.core.handoff import HANDOFF_FILE, Handoff, handoff_to_json
from handler.core.kube_status import FINALIZER
from handler.core.vmi import NODE_LABEL
from handler.host.simulated_host import build_simulated_host
from handler.kube.launcher_pods import CREATED_BY_LABEL
from tests.reliability.chaos_world import HOST, REPO
from tests.support.fakekube import FakeApiServer
from tests.support.private_libvirtd import private_libvirtd

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("libvirtd") is None, reason="needs root and libvirtd"),
]

SEED = int(os.environ.get("QAT_HANDLER_CHAOS_SEED", "11"))
KILLS = int(os.environ.get("QAT_HANDLER_CHAOS_KILLS", "20")) // 2
NODE, NAMESPACE, GROUP, VMIS = "node01", "chaos", "kubevirt.io", "virtualmachineinstances"
SETTLE_TIMEOUT = 600.0


class KubeChaos:
    def __init__(self, root: Path, uri: str, server: FakeApiServer) -> None:
        self.root, self.uri, self.server = root, uri, server
        self.rng = random.Random(SEED)
        api = server.api_client()
        self.custom, self.core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        self.conn = libvirt.open(uri)
        build_simulated_host(root / "host", HOST)
        self.kubeconfig = server.write_kubeconfig(root / "kubeconfig")
        self.agent: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.live: set[str] = set()
        self.deleted: set[str] = set()
        self.log: list[str] = []

    def start_agent(self) -> None:
        self.starts += 1
        command = [sys.executable, "-m", "handler", "agent", "--kubernetes", "--node-name", NODE]
        command += ["--connect", self.uri, "--state-dir", str(self.root / "state"), "--run-dir", str(self.root / "run")]
        command += ["--host-root", str(self.root / "host"), "--domain-type", "qemu", "--on-stop", "keep"]
        command += ["--pod-resources-socket", str(self.root / "no-kubelet.sock"), "--log-format", "json"]
        command += ["--resync-seconds", "5"]
        with (self.root / f"agent-{self.starts}.log").open("wb") as log:
            env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
            self.agent = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)

    def kill_agent(self) -> None:
        if self.agent is not None:
            self.agent.send_signal(signal.SIGKILL)
            self.agent.wait()
            self.agent = None

    def create(self, index: int) -> None:
        name = f"vm-{index:03d}"
        body = {
            "apiVersion": f"{GROUP}/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {NODE_LABEL: NODE}},
            "spec": {"terminationGracePeriodSeconds": 1, "domain": {"memory": {"guest": "16Mi"}, "devices": {}}},
        }
        vmi: dict[str, Any] = self.custom.create_namespaced_custom_object(GROUP, "v1", NAMESPACE, VMIS, body)
        uid = vmi["metadata"]["uid"]
        pod = {
            "metadata": {"name": f"virt-launcher-{name}", "labels": {CREATED_BY_LABEL: uid}},
            "spec": {"nodeName": NODE, "containers": [{"name": "compute", "image": "qat-handler"}]},
        }
        pod_uid = str(self.core.create_namespaced_pod(NAMESPACE, pod).metadata.uid)
        slot = self.root / "run" / "pods" / pod_uid
        slot.mkdir(parents=True, exist_ok=True)
        handoff = Handoff(NAMESPACE, name, uid, pod_uid, ())
        (slot / HANDOFF_FILE).write_text(json.dumps(handoff_to_json(handoff)))
        self.live.add(name)
        self.log.append(f"create {name}")

    def delete(self) -> None:
        name = self.rng.choice(sorted(self.live))
        self.custom.delete_namespaced_custom_object(GROUP, "v1", NAMESPACE, VMIS, name)
        self.live.discard(name)
        self.deleted.add(name)
        self.log.append(f"delete {name}")

    def broken(self) -> str | None:
        objects = {o["metadata"]["name"]: o for o in self.server.objects(VMIS, NAMESPACE, group=GROUP)}
        domains = {d.name().partition("_")[2]: d for d in self.conn.listAllDomains(0)}
        for name in sorted(self.deleted):
            if name in objects and name not in domains:
                finalizers = objects[name]["metadata"].get("finalizers")
                return f"{name} is stuck with finalizers {finalizers} after its domain went"
            if name in domains and name not in objects:
                return f"domain of {name} is left after its VMI went"
            if name in objects:
                return f"{name} is still being deleted"
        for name in sorted(self.live):
            obj = objects.get(name)
            if obj is None:
                return f"{name} vanished"
            phase = (obj.get("status") or {}).get("phase")
            if phase != "Running" or FINALIZER not in (obj["metadata"].get("finalizers") or []):
                return f"{name} is {phase} with finalizers {obj['metadata'].get('finalizers')}"
            if name not in domains or not domains[name].isActive():
                return f"{name} is Running but its guest is not"
        return None

    def settle(self, what: str) -> float:
        started = time.monotonic()
        problem: str | None = "not checked yet"
        while time.monotonic() - started < SETTLE_TIMEOUT:
            assert self.agent is not None and self.agent.poll() is None, f"seed {SEED}, {what}: the agent exited"
            problem = self.broken()
            if problem is None:
                return time.monotonic() - started
            time.sleep(0.5)
        pytest.fail(f"seed {SEED}, {what}: {problem} (last actions: {'; '.join(self.log[-6:])})")


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[KubeChaos]:
    with private_libvirtd(tmp_path) as daemon, FakeApiServer(bookmark_interval=0.5) as server:
        world = KubeChaos(tmp_path, daemon.uri, server)
        try:
            yield world
        finally:
            world.kill_agent()
            world.conn.close()


def test_killing_the_kubernetes_agent_never_strands_a_finalizer_or_a_domain(chaos: KubeChaos) -> None:
    print(f"\nR1 Kubernetes: seed {SEED}, {KILLS} kills, on {chaos.uri} and {chaos.server.url}")
    rng = chaos.rng
    chaos.start_agent()
    for index in range(10):
        chaos.create(index)
    print(f"  initial settle: {chaos.settle('initial start'):.1f} s")
    next_index = 10
    for kill in range(1, KILLS + 1):
        deadline = time.monotonic() + rng.uniform(0.0, 2.5)
        while time.monotonic() < deadline:
            if rng.random() < 0.5 or len(chaos.live) < 5:
                chaos.create(next_index)
                next_index += 1
            else:
                chaos.delete()
            time.sleep(rng.uniform(0.0, 0.5))
        chaos.kill_agent()
        if rng.random() < 0.5 and chaos.live:
            chaos.delete()  # a delete while the agent is down
        chaos.start_agent()
        took = chaos.settle(f"kill {kill}")
        print(
            f"  kill {kill:3d}: {len(chaos.live)} VMIs Running with the finalizer, {len(chaos.deleted)} deleted "
            f"and gone with their domains; settled in {took:.1f} s"
        )
