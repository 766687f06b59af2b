"""The control plane end to end on the fake API server, with real processes: `kubectl`, two
`qat-handler controller` replicas, `qat-handler agent --kubernetes` on test:///default and a
simulated QAT host, and one real `qat-handler launcher` per bound pod.

The scheduler's and kubelet's parts (binding a pod to the node, starting its launcher with
``QAT0`` from a free VF, marking it Running, stopping it when the pod goes) are done here
by explicit steps, so each step of the path is visible and checked.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from handler.core.kube_status import DEVICES_ANNOTATION, FINALIZER
from handler.core.vmi import NODE_LABEL
from tests.kube.agent_harness import NODE, Cluster, eventually
from tests.kube.test_agent_launcher import finish, qat_handler

KUBECTL = shutil.which("kubectl")
RESOURCE = "qat.intel.com/generic"
TAKEOVER_BOUND = 15 + 10
"""The standby takes over within 15 s; the rest is a margin for a loaded machine."""

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@dataclass
class ControlPlane:
    cluster: Cluster
    work: Path
    kubeconfig: Path
    processes: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    launchers: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    """pod name -> its launcher process (what kubelet runs)."""
    free_vfs: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)
    """pod name -> the VF it was given."""

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        env = {"KUBECONFIG": str(self.kubeconfig), "PATH": os.environ.get("PATH", ""), "HOME": str(self.work)}
        return subprocess.run(
            [KUBECTL, *args], input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False
        )

    def start_controller(self, name: str) -> None:
        self.processes[name] = qat_handler(
            "controller", "--launcher-image", "qat-handler:0.1.0", "--lease-namespace", "qat-handler",
            "--run-dir", str(self.cluster.run_dir), "--log-format", "json",
            env={"KUBECONFIG": str(self.kubeconfig), "POD_NAME": name},
        )  # fmt: skip

    def start_agent(self) -> None:
        self.processes["agent"] = qat_handler(
            "agent", "--kubernetes", "--node-name", NODE, "--connect", "test:///default",
            "--run-dir", str(self.cluster.run_dir), "--state-dir", str(self.work / "agent-state"),
            "--host-root", str(self.cluster.host_root),
            "--pod-resources-socket", str(self.work / "no-kubelet.sock"),
            "--log-format", "json", "--on-stop", "keep",
            env={"KUBECONFIG": str(self.kubeconfig)},
        )  # fmt: skip

    def leader(self) -> str:
        lease = self.cluster.server.get_object("leases", "qat-handler", "qat-handler-controller")
        return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")

    def apply_vmi(self, name: str, qats: int = 1) -> None:
        entries = "".join(f"\n        - name: qat{i}\n          deviceName: {RESOURCE}" for i in range(qats))
        manifest = f"""apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: {name}
  namespace: {self.cluster.namespace}
spec:
  terminationGracePeriodSeconds: 5
  domain:
    cpu:
      cores: 1
    memory:
      guest: 256Mi
    devices:
      qats:{entries}
"""
        done = self.kubectl("apply", "--validate=false", "-f", "-", stdin=manifest)
        assert done.returncode == 0, done.stderr

    def pods_of(self, vmi: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.cluster.server.objects("pods", self.cluster.namespace)
            if (p["metadata"].get("labels") or {}).get("vmi.kubevirt.io/id") == vmi
        ]

    def one_pod(self, vmi: str) -> dict[str, Any]:
        pods = eventually(lambda: self.pods_of(vmi), timeout=30, what=f"the launcher pod of {vmi}")
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        return pods[0]

    # -- the scheduler's and kubelet's parts, as explicit steps ---------------------------
    def bind_and_run(self, pod: dict[str, Any]) -> str:
        """Bind the pod to the node, start its launcher with a free VF in QAT0, mark it Running."""
        meta = pod["metadata"]
        vf = self.free_vfs.pop(0)
        self.held[meta["name"]] = vf
        self.launchers[meta["name"]] = qat_handler(
            "launcher", "--run-dir", str(self.cluster.slot_dir(meta["uid"])),
            "--namespace", meta["namespace"], "--name", meta["annotations"]["kubevirt.io/domain"],
            "--uid", meta["labels"]["kubevirt.io/created-by"], "--pod-uid", meta["uid"],
            "--grace-seconds", pod["spec"]["containers"][0]["env"][4]["value"], "--log-format", "json",
            env={"QAT0": vf},
        )  # fmt: skip
        fresh = self.cluster.server.get_object("pods", meta["namespace"], meta["name"])
        assert fresh is not None
        fresh["spec"]["nodeName"] = NODE
        fresh["status"] = {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}]}
        self.cluster.server.put_object(fresh)
        return vf

    def unschedulable(self, pod: dict[str, Any], message: str) -> None:
        fresh = self.cluster.server.get_object("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
        assert fresh is not None
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        fresh["status"] = {"phase": "Pending", "conditions": [condition]}
        self.cluster.server.put_object(fresh)

    def pod_gone(self, name: str) -> None:
        """kubelet: the pod was deleted, so its launcher gets SIGTERM and its VF is free again."""
        launcher = self.launchers.pop(name)
        launcher.send_signal(signal.SIGTERM)
        code, output = finish(launcher, timeout=30)
        assert code == 0, output
        self.free_vfs.append(self.held.pop(name))

    def stop_all(self) -> None:
        """Kill what still runs, and print each process's output (pytest shows it on a failure)."""
        for name, process in [*self.processes.items(), *self.launchers.items()]:
            if process.poll() is None:
                process.kill()
            out, err = process.communicate()
            print(f"--- {name} (exit {process.returncode})\n{out[-3000:]}{err[-6000:]}")


@pytest.fixture
def plane(cluster: Cluster, tmp_path: Path) -> Iterator[ControlPlane]:
    kubeconfig = cluster.server.write_kubeconfig(tmp_path / "kubeconfig")
    running = ControlPlane(cluster, tmp_path, kubeconfig, free_vfs=[str(v) for v in cluster.usable_vfs[:2]])
    try:
        yield running
    finally:
        running.stop_all()


def vmi_status(cluster: Cluster, name: str) -> dict[str, Any]:
    return dict(((cluster.vmi(name) or {}).get("status")) or {})


def test_apply_run_wait_delete_and_a_leader_change(plane: ControlPlane) -> None:
    cluster = plane.cluster
    cluster.set_configmap_gates("QAT")
    plane.start_agent()
    plane.start_controller("controller-a")
    eventually(lambda: plane.leader() == "controller-a", timeout=30, what="controller-a leading")
    plane.start_controller("controller-b")

    # apply a VMI: its pod asks for the QAT resource; bound and running, the VMI runs with its VF
    plane.apply_vmi("first")
    pod = plane.one_pod("first")
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits[RESOURCE] == "1" and pod["spec"]["containers"][0]["resources"]["requests"] == limits
    eventually(lambda: vmi_status(cluster, "first").get("phase") == "Scheduling", what="Scheduling")
    vf = plane.bind_and_run(pod)
    eventually(lambda: cluster.phase("first") == "Running", timeout=30, what="first Running")
    first = cluster.vmi("first")
    assert first is not None
    assert first["metadata"]["labels"][NODE_LABEL] == NODE
    assert first["status"]["nodeName"] == NODE
    assert first["metadata"]["finalizers"] == [FINALIZER]
    assert first["metadata"]["annotations"][DEVICES_ANNOTATION] == f"qat0={RESOURCE}@{vf}"
    table = plane.kubectl("get", "vmi", "first", "-n", cluster.namespace, "-o", "json")
    assert table.returncode == 0 and json.loads(table.stdout)["status"]["phase"] == "Running"

    # the leader dies mid-way: the standby takes over, and makes exactly one pod per VMI
    plane.processes["controller-a"].kill()
    plane.apply_vmi("second")
    eventually(lambda: plane.leader() == "controller-b", timeout=TAKEOVER_BOUND, what="controller-b leading")
    second_pod = plane.one_pod("second")
    plane.bind_and_run(second_pod)
    eventually(lambda: cluster.phase("second") == "Running", timeout=30, what="second Running")

    # one more VMI than there are VFs: it waits in Scheduling with the scheduler's message
    message = "0/1 nodes are available: 1 Insufficient qat.intel.com/generic."
    plane.apply_vmi("third")
    third_pod = plane.one_pod("third")
    assert not plane.free_vfs
    plane.unschedulable(third_pod, message)

    def waiting() -> bool:
        status = vmi_status(cluster, "third")
        return status.get("phase") == "Scheduling" and any(
            c.get("message") == message for c in status.get("conditions") or []
        )

    eventually(waiting, timeout=30, what="third Scheduling with the Insufficient message")

    # delete the first: guest shut down, domain gone, VMI gone, pod gone, VF free; the third starts
    done = plane.kubectl("delete", "vmi", "first", "-n", cluster.namespace, "--wait=false")
    assert done.returncode == 0, done.stderr
    eventually(lambda: cluster.vmi("first") is None, timeout=30, what="first deleted (finalizer released)")
    eventually(lambda: not plane.pods_of("first"), timeout=30, what="first's pod deleted by the controller")
    plane.pod_gone(pod["metadata"]["name"])
    assert plane.free_vfs == [vf]
    plane.bind_and_run(third_pod)
    eventually(lambda: cluster.phase("third") == "Running", timeout=30, what="third Running on the freed VF")
    third = cluster.vmi("third")
    assert third is not None and third["metadata"]["annotations"][DEVICES_ANNOTATION].endswith(f"@{vf}")

    for name in ("first", "second", "third"):
        assert len(plane.pods_of(name)) <= 1, f"{name} has more than one launcher pod"
    assert not cluster.server.internal_errors
