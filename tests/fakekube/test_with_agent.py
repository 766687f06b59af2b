"""The fake cluster with the real agent (``qat-handler agent --kubernetes``, a process with KUBECONFIG) on
its node: the kubelet's launcher hands over the VF it allocated, the agent starts the guest with it and
checks it against the kubelet's pod-resources answer; deleting the pod shuts the guest down and frees the VF.
This is the path an end-to-end test of the controller builds on (it creates the pod instead of the test)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from tests.fakekube.objects import REPO, create_pod, get_pod, launcher_pod
from tests.support.fakekube.cluster import QAT_GENERIC, FakeCluster, NodeSpec
from tests.support.polling import eventually


def start_agent(cluster: FakeCluster, kubeconfig: Path) -> subprocess.Popen[str]:
    node = cluster.node()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("QAT", "PCI_RESOURCE_", "KUBECONFIG"))}
    return subprocess.Popen(
        [
            sys.executable, "-m", "handler", "agent", "--kubernetes",
            "--node-name", node.spec.name,
            "--connect", "test:///default",
            "--host-root", str(node.host_root),
            "--run-dir", str(node.run_dir),
            "--state-dir", str(node.state_dir),
            "--pod-resources-socket", str(node.pod_resources_socket),
            "--log-format", "json",
        ],
        cwd=REPO,
        env={**environ, "KUBECONFIG": str(kubeconfig)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def vmi_status(api: Any, name: str) -> dict[str, Any]:
    vmi = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "kubevirt.io", "v1", "default", "virtualmachineinstances", name
    )
    return dict(vmi.get("status") or {}) | {"annotations": vmi["metadata"].get("annotations") or {}}


def phases_since(api: Any, resource_version: str) -> list[str]:
    """The VMI's phases in every change after ``resource_version`` (a watch replays them)."""
    stream = watch.Watch().stream(
        client.CustomObjectsApi(api).list_namespaced_custom_object,
        "kubevirt.io", "v1", "default", "virtualmachineinstances",
        resource_version=resource_version, timeout_seconds=1,
    )  # fmt: skip
    return [str((event["object"].get("status") or {}).get("phase")) for event in stream]


def test_the_agent_runs_the_guest_with_the_vf_the_kubelet_allocated(
    fake_cluster_factory: Callable[..., FakeCluster], tmp_path: Path
) -> None:
    cluster = fake_cluster_factory(NodeSpec(vfs=2, pod_resources=True))
    api, node = cluster.api_client(), cluster.node()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespaced_config_map(
        "kubevirt", {"metadata": {"name": "kubevirt-config"}, "data": {"feature-gates": "QAT"}}
    )
    agent = start_agent(cluster, cluster.write_kubeconfig(tmp_path / "kubeconfig"))
    try:
        body = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "vmi-qat", "labels": {"kubevirt.io/nodeName": node.spec.name}},
            "spec": {
                "terminationGracePeriodSeconds": 5,
                "domain": {
                    "memory": {"guest": "1Gi"},
                    "devices": {"qats": [{"name": "qat1", "deviceName": QAT_GENERIC}]},
                },
            },
        }
        vmi = custom.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachineinstances", body)
        # The agent makes the slots' directory at start; until then the pod would wait (hostPath Directory).
        eventually(lambda: (node.run_dir / "pods").is_dir(), what="the agent's slot directory")
        pod = create_pod(api, launcher_pod(vmi, vmi_grace=5))
        eventually(lambda: vmi_status(api, "vmi-qat").get("phase") == "Running", timeout=90, what="VMI Running")
        (held,) = node.kubelet.devices.held_by(pod.metadata.uid)
        assert vmi_status(api, "vmi-qat")["annotations"]["qat-handler/devices"] == f"qat1={QAT_GENERIC}@{held}"

        before = custom.get_namespaced_custom_object(
            "kubevirt.io", "v1", "default", "virtualmachineinstances", "vmi-qat"
        )
        core.delete_namespaced_pod(pod.metadata.name, "default")
        eventually(lambda: get_pod(api, pod.metadata.name) is None, timeout=90, what="the pod gone")
        # Reached, not final: the slot directory outlives the pod (kubelet never empties a hostPath), and the
        # agent then rejects that stale handoff, moving the VMI back to Scheduled (reported as an agent issue).
        assert "Succeeded" in phases_since(api, before["metadata"]["resourceVersion"])
        assert len(node.free_vfs()) == 2
        log = node.kubelet.log_of(pod.metadata.uid, "launcher")
        assert "guest is off" in log, log
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            output, _ = agent.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            agent.kill()
            output, _ = agent.communicate()
    assert agent.returncode == 0, output
