"""Garbage collection by ownerReference (background deletion), through the official client."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tests.support.fakekube.cluster import FakeCluster
from tests.support.polling import eventually


def configmap(api: Any, name: str, owners: list[Any] = (), finalizers: list[str] | None = None) -> Any:  # type: ignore[assignment]
    refs = [{"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name, "uid": o.metadata.uid} for o in owners]
    body = {"metadata": {"name": name, "ownerReferences": refs, "finalizers": finalizers or []}}
    return client.CoreV1Api(api).create_namespaced_config_map("default", body)


def names(api: Any) -> set[str]:
    return {c.metadata.name for c in client.CoreV1Api(api).list_namespaced_config_map("default").items}


def test_deleting_an_owner_deletes_its_dependents_and_nothing_else(fake_cluster: FakeCluster) -> None:
    api = fake_cluster.api_client()
    owner = configmap(api, "owner")
    configmap(api, "child", [owner])
    grandchild_owner = configmap(api, "other")
    configmap(api, "unrelated-child", [grandchild_owner])
    configmap(api, "loner")
    fake_cluster.settle()
    assert names(api) == {"owner", "child", "other", "unrelated-child", "loner"}

    client.CoreV1Api(api).delete_namespaced_config_map("owner", "default")
    eventually(lambda: names(api) == {"other", "unrelated-child", "loner"}, what="the child collected")
    assert ("configmaps", "default", "child") in fake_cluster.gc.deleted


def test_collection_cascades_through_generations(fake_cluster: FakeCluster) -> None:
    api = fake_cluster.api_client()
    root = configmap(api, "root")
    child = configmap(api, "child", [root])
    configmap(api, "grandchild", [child])
    client.CoreV1Api(api).delete_namespaced_config_map("root", "default")
    eventually(lambda: names(api) == set(), what="child and grandchild collected")


def test_an_owner_that_is_only_being_deleted_keeps_its_dependents(fake_cluster: FakeCluster) -> None:
    """Background deletion: dependents go after the owner is really gone, not while its finalizers hold it."""
    api, core = fake_cluster.api_client(), client.CoreV1Api(fake_cluster.api_client())
    owner = configmap(api, "owner", finalizers=["example.com/hold"])
    configmap(api, "child", [owner])
    core.delete_namespaced_config_map("owner", "default")
    assert core.read_namespaced_config_map("owner", "default").metadata.deletion_timestamp
    fake_cluster.settle()
    assert names(api) == {"owner", "child"}

    core.patch_namespaced_config_map("owner", "default", {"metadata": {"finalizers": None}})
    eventually(lambda: names(api) == set(), what="owner gone, then the child collected")


def test_a_dependent_with_another_owner_only_loses_the_dangling_reference(fake_cluster: FakeCluster) -> None:
    api, core = fake_cluster.api_client(), client.CoreV1Api(fake_cluster.api_client())
    first, second = configmap(api, "first"), configmap(api, "second")
    configmap(api, "shared", [first, second])
    core.delete_namespaced_config_map("first", "default")

    def owners() -> list[str]:
        refs = core.read_namespaced_config_map("shared", "default").metadata.owner_references or []
        return [r.name for r in refs]

    eventually(lambda: owners() == ["second"], what="the reference to the deleted owner removed")
    fake_cluster.settle()
    assert "shared" in names(api)

    core.delete_namespaced_config_map("second", "default")
    eventually(lambda: "shared" not in names(api), what="the last owner gone: collected")


def test_an_owner_replaced_by_a_namesake_does_not_keep_the_dependent(fake_cluster: FakeCluster) -> None:
    """Owners are matched by uid: a new object with the old name is not the owner."""
    api, core = fake_cluster.api_client(), client.CoreV1Api(fake_cluster.api_client())
    owner = configmap(api, "owner")
    configmap(api, "child", [owner])
    core.delete_namespaced_config_map("owner", "default")
    configmap(api, "owner")
    eventually(lambda: names(api) == {"owner"}, what="the child of the old owner collected")


def test_a_custom_resource_owns_a_pod(fake_cluster: FakeCluster) -> None:
    """A VMI's launcher-style pod (unscheduled here: it asks for a node that does not exist) goes with it."""
    api = fake_cluster.api_client()
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    vmi = custom.create_namespaced_custom_object(
        "kubevirt.io",
        "v1",
        "default",
        "virtualmachineinstances",
        {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": {"name": "v"}, "spec": {}},
    )
    ref = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "name": "v", "uid": vmi["metadata"]["uid"]}
    pod = {
        "metadata": {"name": "virt-launcher-v-abcde", "ownerReferences": [{**ref, "controller": True}]},
        "spec": {"nodeSelector": {"kubernetes.io/hostname": "elsewhere"}, "containers": [{"name": "c", "image": "x"}]},
    }
    core.create_namespaced_pod("default", pod)
    custom.delete_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachineinstances", "v")
    eventually(lambda: not core.list_namespaced_pod("default").items, what="the pod collected")
