"""The fake scheduler: binds a pod only where the node's allocatable resources fit, says why not in
kube-scheduler's words, and tries again when the cluster changes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from kubernetes import client

from tests.fakekube.objects import condition, create_pod, get_pod, sleeper_pod
from tests.support.fakekube.cluster import QAT_GENERIC, FakeCluster, NodeSpec, node_object
from tests.support.fakekube.quantities import amount
from tests.support.fakekube.scheduler import node_filter_reasons, unschedulable_message
from tests.support.polling import eventually

INSUFFICIENT_1 = f"0/1 nodes are available: 1 Insufficient {QAT_GENERIC}."


def unschedulable(api: object, name: str) -> str | None:
    found = condition(get_pod(api, name), "PodScheduled")
    if found is not None and found.status == "False" and found.reason == "Unschedulable":
        return str(found.message)
    return None


def node_of(api: object, name: str) -> str | None:
    pod = get_pod(api, name)
    return pod.spec.node_name if pod is not None else None


def test_a_pod_that_fits_is_bound_with_podscheduled_true(fake_cluster: FakeCluster) -> None:
    api = fake_cluster.api_client()
    create_pod(api, sleeper_pod("fits", qats=2))
    assert eventually(lambda: node_of(api, "fits"), what="bound") == "node01"
    scheduled = condition(get_pod(api, "fits"), "PodScheduled")
    assert (scheduled.status, scheduled.reason) == ("True", None)
    assert fake_cluster.scheduler.bindings == [("default", "fits", "node01")]


def test_one_more_pod_than_vfs_waits_with_the_insufficient_message(fake_cluster: FakeCluster) -> None:
    api = fake_cluster.api_client()
    for name in ("a", "b"):
        create_pod(api, sleeper_pod(name))
        eventually(lambda n=name: node_of(api, n), what=f"{name} bound")  # type: ignore[misc]
    create_pod(api, sleeper_pod("c"))
    assert eventually(lambda: unschedulable(api, "c"), what="c unschedulable") == INSUFFICIENT_1
    fake_cluster.settle()
    assert node_of(api, "c") is None


def test_a_pod_asking_for_more_than_a_node_has_never_fits(fake_cluster: FakeCluster) -> None:
    api = fake_cluster.api_client()
    create_pod(api, sleeper_pod("greedy", qats=3))
    assert eventually(lambda: unschedulable(api, "greedy")) == INSUFFICIENT_1


def test_deleting_a_bound_pod_lets_the_waiting_one_in(fake_cluster: FakeCluster) -> None:
    """Retry on change: the deleted pod's process is stopped (SIGTERM), it finishes, its VF counts no more."""
    api = fake_cluster.api_client()
    for name in ("a", "b"):
        create_pod(api, sleeper_pod(name))
        eventually(lambda n=name: node_of(api, n), what=f"{name} bound")  # type: ignore[misc]
    create_pod(api, sleeper_pod("c"))
    eventually(lambda: unschedulable(api, "c"))
    client.CoreV1Api(api).delete_namespaced_pod("a", "default")
    assert eventually(lambda: node_of(api, "c"), what="c bound once a is gone") == "node01"
    assert get_pod(api, "a") is None


def test_a_new_node_takes_the_waiting_pod(fake_cluster: FakeCluster) -> None:
    api = fake_cluster.api_client()
    create_pod(api, sleeper_pod("big", qats=4))
    eventually(lambda: unschedulable(api, "big"))
    spec = NodeSpec("node02", vfs=4)
    fake_cluster.server.put_object(node_object(spec, {QAT_GENERIC: "4"}))
    assert eventually(lambda: node_of(api, "big"), what="bound to the new node") == "node02"


def test_the_message_counts_each_reason_over_nodes(fake_cluster_factory: Callable[..., FakeCluster]) -> None:
    cluster = fake_cluster_factory(
        NodeSpec("node01", vfs=1, labels={"zone": "a"}),
        NodeSpec("node02", vfs=1, labels={"zone": "a"}),
        NodeSpec("node03", vfs=4, labels={"zone": "b"}),
    )
    api = cluster.api_client()
    create_pod(api, sleeper_pod("p", qats=2, nodeSelector={"zone": "a"}))
    assert eventually(lambda: unschedulable(api, "p")) == (
        f"0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient {QAT_GENERIC}."
    )
    client.CoreV1Api(api).patch_node("node03", {"metadata": {"labels": {"zone": "a"}}})
    assert eventually(lambda: node_of(api, "p"), what="bound once the labels match") == "node03"


def test_pods_for_another_scheduler_are_left_alone(fake_cluster: FakeCluster) -> None:
    api = fake_cluster.api_client()
    create_pod(api, sleeper_pod("theirs", schedulerName="someone-else"))
    create_pod(api, sleeper_pod("ours"))
    eventually(lambda: node_of(api, "ours"))
    fake_cluster.settle()
    pod = get_pod(api, "theirs")
    assert pod.spec.node_name is None and condition(pod, "PodScheduled") is None


# -- the fit rules and the message, without a cluster -------------------------------------------

NODE = node_object(NodeSpec("n", labels={"zone": "a"}), {QAT_GENERIC: "2"})


def pod(**spec: object) -> dict[str, object]:
    return sleeper_pod("p", **spec)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pod_spec", "node_spec", "used", "expected"),
    [
        ({}, {}, {}, []),
        ({}, {}, {QAT_GENERIC: 2}, [f"Insufficient {QAT_GENERIC}"]),
        ({"nodeSelector": {"zone": "b"}}, {}, {}, ["node(s) didn't match Pod's node affinity/selector"]),
        ({}, {"unschedulable": True}, {}, ["node(s) were unschedulable"]),
        ({}, {"taints": [{"key": "qat", "value": "only", "effect": "NoSchedule"}]}, {}, [
            "node(s) had untolerated taint {qat: only}"
        ]),
        (
            {"tolerations": [{"key": "qat", "operator": "Equal", "value": "only", "effect": "NoSchedule"}]},
            {"taints": [{"key": "qat", "value": "only", "effect": "NoSchedule"}]},
            {},
            [],
        ),
        ({"tolerations": [{"operator": "Exists"}]}, {"taints": [{"key": "x", "effect": "NoExecute"}]}, {}, []),
        (
            {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]
            }}}},
            {}, {}, ["node(s) didn't match Pod's node affinity/selector"],
        ),
        ({}, {}, {"cpu": 8, "memory": 1}, ["Insufficient cpu"]),
    ],
)  # fmt: skip
def test_node_filter_reasons(
    pod_spec: dict[str, object], node_spec: dict[str, object], used: dict[str, int], expected: list[str]
) -> None:
    the_pod = pod(**pod_spec)
    the_pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "500m"  # type: ignore[index]
    node = {**NODE, "spec": node_spec}
    assert node_filter_reasons(the_pod, node, Counter({k: amount(v) for k, v in used.items()}), 0) == expected


def test_messages() -> None:
    assert unschedulable_message(0, Counter()) == "no nodes available to schedule pods"
    assert unschedulable_message(3, Counter({"Insufficient cpu": 1, f"Insufficient {QAT_GENERIC}": 3})) == (
        f"0/3 nodes are available: 1 Insufficient cpu, 3 Insufficient {QAT_GENERIC}."
    )
