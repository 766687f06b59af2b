"""Graceful pod deletion, as kube-apiserver and kubelet do it together, through the official client."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tests.fakekube.objects import create_pod, get_pod, sleeper_pod
from tests.support.fakekube.cluster import FakeCluster
from tests.support.polling import eventually

STUBBORN = ["sh", "-c", "trap '' TERM; exec sleep 600"]
"""Ignores SIGTERM (an ignored signal stays ignored across exec): only SIGKILL ends it."""


def stubborn_pod(api: Any, name: str, grace: int = 30) -> Any:
    body = sleeper_pod(name, qats=1, terminationGracePeriodSeconds=grace)
    body["spec"]["containers"][0]["command"] = STUBBORN
    pod = create_pod(api, body)
    eventually(lambda: get_pod(api, name).status.phase == "Running", what=f"{name} Running")
    return pod


def test_an_unscheduled_pod_goes_at_once(fake_cluster: FakeCluster) -> None:
    api = fake_cluster.api_client()
    create_pod(api, sleeper_pod("nowhere", nodeSelector={"kubernetes.io/hostname": "elsewhere"}))
    client.CoreV1Api(api).delete_namespaced_pod("nowhere", "default")
    assert get_pod(api, "nowhere") is None


def test_a_running_pod_stays_marked_until_its_grace_is_up(fake_cluster: FakeCluster) -> None:
    """A second delete with a shorter grace cuts the wait short, as it does for kubelet."""
    api, node = fake_cluster.api_client(), fake_cluster.node()
    pod = stubborn_pod(api, "stubborn", grace=600)
    core = client.CoreV1Api(api)
    core.delete_namespaced_pod("stubborn", "default")
    marked = get_pod(api, "stubborn")
    assert marked.metadata.deletion_timestamp is not None
    assert marked.metadata.deletion_grace_period_seconds == 600
    fake_cluster.settle()
    run = node.kubelet.run_of(pod.metadata.uid)
    assert run is not None and not run.done and run.grace == 600  # told to stop, ignoring it
    assert get_pod(api, "stubborn") is not None and len(node.free_vfs()) == 1

    shortened = core.delete_namespaced_pod("stubborn", "default", grace_period_seconds=1)
    assert shortened.metadata.deletion_grace_period_seconds == 1  # the answer: the pod may be gone by now
    eventually(lambda: get_pod(api, "stubborn") is None, what="killed after the shorter grace, then removed")
    assert run.exit_codes == {"main": 137}
    assert len(node.free_vfs()) == 2


def test_a_longer_grace_never_extends_a_deletion(fake_cluster: FakeCluster) -> None:
    api = fake_cluster.api_client()
    stubborn_pod(api, "short", grace=600)
    core = client.CoreV1Api(api)
    core.delete_namespaced_pod("short", "default", grace_period_seconds=300)
    core.delete_namespaced_pod("short", "default", grace_period_seconds=500)
    assert get_pod(api, "short").metadata.deletion_grace_period_seconds == 300


def test_grace_zero_removes_the_pod_at_once_and_the_kubelet_kills_it(fake_cluster: FakeCluster) -> None:
    api, node = fake_cluster.api_client(), fake_cluster.node()
    pod = stubborn_pod(api, "forced")
    client.CoreV1Api(api).delete_namespaced_pod("forced", "default", grace_period_seconds=0)
    assert get_pod(api, "forced") is None
    run = node.kubelet.run_of(pod.metadata.uid)
    eventually(lambda: run is None or run.done, what="the process killed")
    eventually(lambda: len(node.free_vfs()) == 2, what="its VF freed")
