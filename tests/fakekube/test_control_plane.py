"""The control plane on the fake cluster, with nothing done by hand: `kubectl apply`, the real
`qat-handler controller` making launcher pods, the fake scheduler binding them where
`qat.intel.com/generic` fits, the fake kubelet running the real launcher with a free VF, and
`qat-handler agent --kubernetes` (test:///default) running the guest; `kubectl delete` frees the VF
for the VMI that was waiting."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.fakekube.objects import vmi_manifest
from tests.fakekube.test_with_agent import start_agent
from tests.kube.test_agent_launcher import qat_handler
from tests.support.fakekube.cluster import QAT_GENERIC, FakeCluster, NodeSpec
from tests.support.polling import eventually

KUBECTL = shutil.which("kubectl")
VMIS = ("kubevirt.io", "virtualmachineinstances")
INSUFFICIENT = f"0/1 nodes are available: 1 Insufficient {QAT_GENERIC}."

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@pytest.fixture
def plane(fake_cluster_factory: Callable[..., FakeCluster], tmp_path: Path) -> Iterator[tuple[FakeCluster, Path]]:
    cluster = fake_cluster_factory(NodeSpec(vfs=2, pod_resources=True))
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    client.CoreV1Api(cluster.api_client()).create_namespaced_config_map(
        "kubevirt", {"metadata": {"name": "kubevirt-config"}, "data": {"feature-gates": "QAT"}}
    )
    processes = [
        start_agent(cluster, kubeconfig),
        qat_handler(
            "controller", "--launcher-image", "qat-handler:0.1.0", "--lease-namespace", "qat-handler",
            "--log-format", "json",
            env={"KUBECONFIG": str(kubeconfig), "POD_NAME": "controller-0"},
        ),
    ]  # fmt: skip
    try:
        yield cluster, kubeconfig
    finally:
        for process in processes:
            process.kill()
            out, err = process.communicate()
            print(f"--- {process.args[3]} (exit {process.returncode})\n{out[-4000:]}{(err or '')[-4000:]}")


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    assert KUBECTL is not None
    env = {"KUBECONFIG": str(kubeconfig), "PATH": os.environ.get("PATH", ""), "HOME": str(kubeconfig.parent)}
    done = subprocess.run([KUBECTL, *args], input=stdin, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def status(cluster: FakeCluster, name: str) -> dict[str, Any]:
    vmi = cluster.server.get_object(VMIS[1], "default", name, group=VMIS[0]) or {}
    return dict(vmi.get("status") or {}) | {"annotations": (vmi.get("metadata") or {}).get("annotations") or {}}


def pod_of(cluster: FakeCluster, vmi: str) -> dict[str, Any] | None:
    pods = [
        p
        for p in cluster.server.objects("pods", "default")
        if (p["metadata"].get("labels") or {}).get("vmi.kubevirt.io/id") == vmi
    ]
    assert len(pods) <= 1, f"{vmi} has {len(pods)} launcher pods"
    return pods[0] if pods else None


def test_apply_run_wait_and_delete_on_the_fake_cluster(plane: tuple[FakeCluster, Path]) -> None:
    cluster, kubeconfig = plane
    node = cluster.node()
    for name in ("first", "second"):
        kubectl(kubeconfig, "apply", "--validate=false", "-f", "-", stdin=vmi_manifest(name))
        eventually(lambda n=name: status(cluster, n).get("phase") == "Running", 120, f"{name} Running")  # type: ignore[misc]
        pod = pod_of(cluster, name)
        assert pod is not None and pod["spec"]["nodeName"] == node.spec.name
        (vf,) = node.kubelet.devices.held_by(pod["metadata"]["uid"])
        assert status(cluster, name)["annotations"]["qat-handler/devices"] == f"qat0={QAT_GENERIC}@{vf}"
    assert node.free_vfs() == ()

    kubectl(kubeconfig, "apply", "--validate=false", "-f", "-", stdin=vmi_manifest("third"))

    def waiting() -> bool:
        found = status(cluster, "third")
        return found.get("phase") == "Scheduling" and any(
            c.get("message") == INSUFFICIENT for c in found.get("conditions") or []
        )

    eventually(waiting, 60, "third Scheduling with the scheduler's Insufficient message")

    first_pod = pod_of(cluster, "first")
    assert first_pod is not None
    (freed,) = node.kubelet.devices.held_by(first_pod["metadata"]["uid"])
    kubectl(kubeconfig, "delete", "vmi", "first", "--wait=false")
    eventually(
        lambda: not status(cluster, "first") or status(cluster, "first") == {"annotations": {}}, 120, "first gone"
    )
    eventually(lambda: pod_of(cluster, "first") is None, 120, "first's pod gone")
    eventually(lambda: status(cluster, "third").get("phase") == "Running", 120, "third Running on the freed VF")
    assert status(cluster, "third")["annotations"]["qat-handler/devices"] == f"qat0={QAT_GENERIC}@{freed}"
