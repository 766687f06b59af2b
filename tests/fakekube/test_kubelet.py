"""The fake kubelet: it runs the real ``qat-handler launcher`` for a launcher pod bound to its node, with
``QAT0..`` from the node's free VFs, and stops it as kubelet does, honouring the pod's grace period."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from handler.core.handoff import HANDOFF_FILE, REPORT_FILE, AgentReport, report_to_json
from handler.kube.pod_resources import PodResourcesClient
from tests.fakekube.objects import create_pod, create_vmi, get_pod, launcher_pod, sleeper_pod
from tests.support.fakekube.cluster import QAT_GENERIC, FakeCluster, FakeNode, NodeSpec
from tests.support.polling import eventually


def slots_dir(node: FakeNode) -> Path:
    """What the agent makes at start: the launcher pods' hostPath, mode 1733."""
    pods = node.run_dir / "pods"
    pods.mkdir(parents=True, exist_ok=True)
    pods.chmod(0o1733)
    return pods


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def running(api: Any, name: str) -> Any:
    pod = get_pod(api, name)
    if pod is None or pod.status.phase != "Running":
        return None
    ready = next(c for c in pod.status.conditions if c.type == "Ready")
    return pod if ready.status == "True" else None


def start_launcher(cluster: FakeCluster, vmi_name: str, **grace: int) -> tuple[Any, dict[str, Any], Path]:
    """A VMI and its launcher pod (deploy/examples/launcher-pod.yaml), Running: (pod, vmi, its slot)."""
    api = cluster.api_client()
    vmi = create_vmi(api, vmi_name)
    pod = create_pod(api, launcher_pod(vmi, **grace))
    eventually(lambda: running(api, pod.metadata.name), what="the launcher pod Running and Ready")
    slot = cluster.node().run_dir / "pods" / pod.metadata.uid
    eventually(lambda: read_json(slot / HANDOFF_FILE), what="the launcher's handoff")
    return pod, vmi, slot


def pod_events(api: Any, name: str, timeout: float = 90) -> list[Any]:
    """Every watch event of one pod until it is DELETED (a watch from the start)."""
    core = client.CoreV1Api(api)
    seen = []
    for event in watch.Watch().stream(
        core.list_namespaced_pod, "default", field_selector=f"metadata.name={name}", timeout_seconds=timeout
    ):
        seen.append(event)
        if event["type"] == "DELETED":
            return seen
    raise AssertionError(f"pod {name} was not deleted within {timeout} s; saw {[e['type'] for e in seen]}")


def test_a_launcher_pod_runs_the_real_launcher_with_a_free_vf(fake_cluster: FakeCluster) -> None:
    node = fake_cluster.node()
    slots_dir(node)
    pod, vmi, slot = start_launcher(fake_cluster, "vmi-a")
    handoff = read_json(slot / HANDOFF_FILE)
    assert handoff is not None
    assert handoff["vmi"] == {"namespace": "default", "name": "vmi-a", "uid": vmi["metadata"]["uid"]}
    assert handoff["podUID"] == pod.metadata.uid  # the downward API, through the pod's env
    assert handoff["graceSeconds"] == 30
    (bdf,) = handoff["env"].values()
    assert list(handoff["env"]) == ["QAT0"]
    assert bdf in {str(v) for v in node.vfs}
    assert bdf not in node.free_vfs() and len(node.free_vfs()) == len(node.vfs) - 1
    assert node.kubelet.devices.held_by(pod.metadata.uid) == (bdf,)


def test_deleting_the_pod_stops_the_launcher_and_frees_the_vf(fake_cluster: FakeCluster) -> None:
    """SIGTERM: the launcher asks the agent to stop the guest; the agent's report lets it exit, the pod goes."""
    node = fake_cluster.node()
    slots_dir(node)
    pod, vmi, slot = start_launcher(fake_cluster, "vmi-b")
    api = fake_cluster.api_client()
    client.CoreV1Api(api).delete_namespaced_pod(pod.metadata.name, "default")
    deleting = get_pod(api, pod.metadata.name)
    assert deleting.metadata.deletion_grace_period_seconds == 60  # the pod's own grace
    eventually(lambda: (read_json(slot / HANDOFF_FILE) or {}).get("stopRequested"), what="stop requested")
    assert len(node.free_vfs()) == len(node.vfs) - 1  # still held while the launcher runs
    report = report_to_json(AgentReport(vmi_uid=vmi["metadata"]["uid"], phase="Succeeded", guest_off=True))
    (slot / REPORT_FILE).write_text(json.dumps(report))
    eventually(lambda: get_pod(api, pod.metadata.name) is None, what="the pod gone")
    assert len(node.free_vfs()) == len(node.vfs)
    assert "guest is off" in node.kubelet.log_of(pod.metadata.uid, "launcher")


def test_a_launcher_that_outlives_the_grace_is_killed(fake_cluster: FakeCluster) -> None:
    """Pod grace 1 s, while the launcher would wait 30 + 15 s for an agent that never answers: SIGKILL."""
    node = fake_cluster.node()
    slots_dir(node)
    pod, _vmi, _slot = start_launcher(fake_cluster, "vmi-c", pod_grace=1)
    api = fake_cluster.api_client()
    client.CoreV1Api(api).delete_namespaced_pod(pod.metadata.name, "default")
    events = pod_events(api, pod.metadata.name)
    finished = [e["object"] for e in events if e["object"].status.phase == "Failed"]
    assert finished, [e["object"].status.phase for e in events]
    state = finished[-1].status.container_statuses[0].state.terminated
    assert (state.exit_code, state.reason) == (137, "Error")
    assert len(node.free_vfs()) == len(node.vfs)


def test_the_vmi_going_takes_its_launcher_pod_with_it(fake_cluster: FakeCluster) -> None:
    """Garbage collection and the kubelet together: the pod is deleted gracefully, the launcher stopped."""
    node = fake_cluster.node()
    slots_dir(node)
    pod, _vmi, slot = start_launcher(fake_cluster, "vmi-d", pod_grace=1)
    api = fake_cluster.api_client()
    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        "kubevirt.io", "v1", "default", "virtualmachineinstances", "vmi-d"
    )
    eventually(lambda: get_pod(api, pod.metadata.name) is None, what="the pod collected and stopped")
    assert ("pods", "default", pod.metadata.name) in fake_cluster.gc.deleted
    assert (read_json(slot / HANDOFF_FILE) or {}).get("stopRequested") is True
    assert len(node.free_vfs()) == len(node.vfs)


def test_each_pod_gets_its_own_vfs_and_a_freed_vf_goes_to_the_next(fake_cluster: FakeCluster) -> None:
    node = fake_cluster.node()
    slots_dir(node)
    first, _, first_slot = start_launcher(fake_cluster, "vmi-e", pod_grace=1)
    _second, _, second_slot = start_launcher(fake_cluster, "vmi-f")
    vf_first = (read_json(first_slot / HANDOFF_FILE) or {})["env"]["QAT0"]
    vf_second = (read_json(second_slot / HANDOFF_FILE) or {})["env"]["QAT0"]
    assert vf_first != vf_second and node.free_vfs() == ()
    api = fake_cluster.api_client()
    third = create_pod(api, launcher_pod(create_vmi(api, "vmi-g")))
    eventually(lambda: get_pod(api, third.metadata.name).status.conditions, what="the third pod looked at")
    assert get_pod(api, third.metadata.name).spec.node_name is None
    client.CoreV1Api(api).delete_namespaced_pod(first.metadata.name, "default")
    eventually(lambda: running(api, third.metadata.name), timeout=90, what="the third pod Running")
    handoff = eventually(lambda: read_json(node.run_dir / "pods" / third.metadata.uid / HANDOFF_FILE))
    assert handoff["env"] == {"QAT0": vf_first}


def test_a_missing_slot_directory_keeps_the_pod_waiting(fake_cluster: FakeCluster) -> None:
    """hostPath type Directory: until the agent has made it, the pod waits in ContainerCreating."""
    api = fake_cluster.api_client()
    pod = create_pod(api, launcher_pod(create_vmi(api, "vmi-h")))

    def waiting() -> Any:
        found = get_pod(api, pod.metadata.name)
        statuses = found.status.container_statuses or []
        return statuses and statuses[0].state.waiting

    state = eventually(waiting, what="the container waiting")
    assert state.reason == "ContainerCreating"
    assert "hostPath type check failed: /run/qat-handler/pods is not a directory" in state.message
    assert len(fake_cluster.node().free_vfs()) == 2
    slots_dir(fake_cluster.node())
    eventually(lambda: running(api, pod.metadata.name), what="Running once the directory exists")


def test_pod_resources_api_answers_with_the_allocations(fake_cluster_factory: Callable[..., FakeCluster]) -> None:
    cluster = fake_cluster_factory(NodeSpec(pod_resources=True))
    node = cluster.node()
    slots_dir(node)
    pod, _vmi, slot = start_launcher(cluster, "vmi-i")
    bdf = (read_json(slot / HANDOFF_FILE) or {})["env"]["QAT0"]
    assert node.pod_resources_socket is not None
    answer = PodResourcesClient(node.pod_resources_socket)
    try:
        assert answer.allocations().devices_of("default", pod.metadata.name, QAT_GENERIC) == frozenset({bdf})
    finally:
        answer.close()


def test_the_node_advertises_its_vfs(fake_cluster: FakeCluster) -> None:
    node = client.CoreV1Api(fake_cluster.api_client()).read_node("node01")
    assert node.status.allocatable[QAT_GENERIC] == "2"
    assert node.metadata.labels["kubernetes.io/hostname"] == "node01"


def test_a_command_that_cannot_start_fails_the_pod_and_frees_its_vf(fake_cluster: FakeCluster) -> None:
    api = fake_cluster.api_client()
    body = sleeper_pod("broken")
    body["spec"]["containers"][0]["command"] = ["/nonexistent/launcher"]
    create_pod(api, body)
    pod = eventually(lambda: get_pod(api, "broken").status.phase == "Failed" and get_pod(api, "broken"))
    assert pod.status.container_statuses[0].state.terminated.exit_code == 128
    assert "cannot start /nonexistent/launcher" in fake_cluster.node().kubelet.log_of(pod.metadata.uid, "main")
    assert len(fake_cluster.node().free_vfs()) == 2
