"""The fake kube-apiserver, driven only through the official ``kubernetes`` client over real HTTP."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.support.fake_apiserver import FakeApiServer

G, V, NS, VMIS = "kubevirt.io", "v1", "default", "virtualmachineinstances"
NODE_LABEL = "kubevirt.io/nodeName"
JSON_PATCH = "application/json-patch+json"
FINALIZER = "qat.intel.com/vf-release"
EVENT_TIME = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


# --- fixtures and helpers -----------------------------------------------------------


@pytest.fixture
def make_server() -> Iterator[Callable[..., FakeApiServer]]:
    servers: list[FakeApiServer] = []

    def make(**kwargs: Any) -> FakeApiServer:
        kwargs.setdefault("bookmark_interval", 0.2)
        server = FakeApiServer(**kwargs)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        errors = server.internal_errors
        server.stop()
        assert not errors, "the fake itself failed:\n" + "\n".join(errors)


@pytest.fixture
def server(make_server: Callable[..., FakeApiServer]) -> FakeApiServer:
    return make_server()


@pytest.fixture
def crd(server: FakeApiServer) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(server.api_client())


@pytest.fixture
def core(server: FakeApiServer) -> client.CoreV1Api:
    return client.CoreV1Api(server.api_client())


def vmi(name: str, node: str | None = "node-a", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if node is not None:
        meta["labels"] = {NODE_LABEL: node}
    meta.update(extra.pop("metadata", {}))
    return {
        "apiVersion": f"{G}/{V}",
        "kind": "VirtualMachineInstance",
        "metadata": meta,
        "spec": {"domain": {"cpu": {"cores": 1}}},
        **extra,
    }


def status_of(exc: pytest.ExceptionInfo[ApiException]) -> tuple[int, str]:
    return exc.value.status, json.loads(exc.value.body)["reason"]


def names(items: list[dict[str, Any]]) -> list[str]:
    return [i["metadata"]["name"] for i in items]


class Collector:
    """Runs one ``watch.Watch().stream(...)`` in a thread and records what it yields or raises."""

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any):
        kwargs.setdefault("timeout_seconds", 10)
        self.watch = watch.Watch()
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, args=(func, args, kwargs), daemon=True)
        self._thread.start()

    def _run(self, func: Callable[..., Any], args: Any, kwargs: Any) -> None:
        try:
            for event in self.watch.stream(func, *args, **kwargs):
                self.events.append(event)
        except BaseException as e:  # recorded for the test to assert on
            if not self._stopping:  # Watch.stop() from another thread cuts the client's own socket
                self.error = e
        finally:
            self.done.set()

    def summary(self) -> list[tuple[str, str]]:
        return [
            (e["type"], e["raw_object"]["metadata"].get("name", "")) for e in self.events if e["type"] != "BOOKMARK"
        ]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str, str]]:
        deadline = time.monotonic() + timeout
        while len(self.summary()) < count and time.monotonic() < deadline and not self.done.is_set():
            time.sleep(0.01)
        return self.summary()

    def stop(self) -> None:
        deadline = time.monotonic() + 2  # Watch.stop() can only cut a response it already has
        while getattr(self.watch, "_resp", None) is None and not self.done.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stopping = True
        self.watch.stop()
        self.done.wait(5)


# --- create / get / list -----------------------------------------------------------


def test_create_assigns_server_fields_and_refuses_duplicates(crd: client.CustomObjectsApi) -> None:
    created = crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a"))
    meta = created["metadata"]
    assert meta["namespace"] == NS and meta["generation"] == 1
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and int(meta["resourceVersion"]) > 0
    assert crd.get_namespaced_custom_object(G, V, NS, VMIS, "a") == created
    with pytest.raises(ApiException) as exc:
        crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a"))
    assert status_of(exc) == (409, "AlreadyExists")
    with pytest.raises(ApiException) as exc:
        crd.get_namespaced_custom_object(G, V, NS, VMIS, "missing")
    assert status_of(exc) == (404, "NotFound")


def test_create_validates_like_the_real_server(crd: client.CustomObjectsApi) -> None:
    bad_label = vmi("a", node="0000:3d:01.0")  # a PCI address is not a valid label value
    with pytest.raises(ApiException) as exc:
        crd.create_namespaced_custom_object(G, V, NS, VMIS, bad_label)
    assert status_of(exc) == (422, "Invalid")
    no_kind = {k: v for k, v in vmi("b").items() if k != "kind"}
    with pytest.raises(ApiException) as exc:
        crd.create_namespaced_custom_object(G, V, NS, VMIS, no_kind)
    assert exc.value.status == 400
    with pytest.raises(ApiException) as exc:
        crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("c", metadata={"resourceVersion": "7"}))
    assert exc.value.status == 500
    generated = crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("", metadata={"generateName": "vmi-"}))
    assert generated["metadata"]["name"].startswith("vmi-") and len(generated["metadata"]["name"]) == 9


def test_list_carries_resource_version_and_applies_label_selectors(
    server: FakeApiServer, crd: client.CustomObjectsApi
) -> None:
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a1", "node-a"))
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a2", "node-a"))
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("b1", "node-b"))
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("u", None))
    crd.create_namespaced_custom_object(G, V, "other", VMIS, vmi("x", "node-a"))

    listed = crd.list_namespaced_custom_object(G, V, NS, VMIS)
    assert listed["kind"] == "VirtualMachineInstanceList"
    assert listed["metadata"]["resourceVersion"] == str(server.resource_version)
    assert names(listed["items"]) == ["a1", "a2", "b1", "u"]

    def select(selector: str) -> list[str]:
        return names(crd.list_namespaced_custom_object(G, V, NS, VMIS, label_selector=selector)["items"])

    assert select(f"{NODE_LABEL}=node-a") == ["a1", "a2"]
    assert select(f"{NODE_LABEL}==node-b") == ["b1"]
    assert select(f"{NODE_LABEL}!=node-a") == ["b1", "u"]  # != also matches objects without the label
    assert select(NODE_LABEL) == ["a1", "a2", "b1"]
    assert select(f"!{NODE_LABEL}") == ["u"]
    assert select(f"{NODE_LABEL} in (node-b, node-c)") == ["b1"]
    assert select(f"{NODE_LABEL} notin (node-a)") == ["b1", "u"]
    assert names(crd.list_cluster_custom_object(G, V, VMIS, label_selector=f"{NODE_LABEL}=node-a")["items"]) == [
        "a1",
        "a2",
        "x",
    ]
    with pytest.raises(ApiException) as exc:
        select("kubevirt.io/nodeName in node-a")
    assert exc.value.status == 400


def test_configmap_field_selectors(core: client.CoreV1Api) -> None:
    for ns, name in [(NS, "one"), (NS, "two"), ("other", "one")]:
        core.create_namespaced_config_map(
            ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"k": name})
        )
    assert [c.metadata.name for c in core.list_namespaced_config_map(NS, field_selector="metadata.name=two").items] == [
        "two"
    ]
    everywhere = core.list_config_map_for_all_namespaces(field_selector="metadata.name=one").items
    assert sorted(c.metadata.namespace for c in everywhere) == ["default", "other"]
    assert [
        c.metadata.namespace
        for c in core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=other").items
    ] == ["other"]
    assert [
        c.metadata.name for c in core.list_namespaced_config_map(NS, field_selector="metadata.name!=one").items
    ] == ["two"]
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_config_map(NS, field_selector="data.k=one")
    assert exc.value.status == 400 and "field label not supported" in exc.value.body


# --- update / patch ---------------------------------------------------------------


def test_replace_needs_the_current_resource_version(crd: client.CustomObjectsApi) -> None:
    first = crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a"))
    second = crd.patch_namespaced_custom_object(G, V, NS, VMIS, "a", {"metadata": {"annotations": {"x": "1"}}})
    with pytest.raises(ApiException) as exc:
        crd.replace_namespaced_custom_object(G, V, NS, VMIS, "a", first)
    assert status_of(exc) == (409, "Conflict")
    unconditional = {**second, "metadata": {k: v for k, v in second["metadata"].items() if k != "resourceVersion"}}
    with pytest.raises(ApiException) as exc:  # custom resources do not allow unconditional updates
        crd.replace_namespaced_custom_object(G, V, NS, VMIS, "a", unconditional)
    assert status_of(exc) == (422, "Invalid")
    renamed = {**second, "metadata": {**second["metadata"], "name": "b"}}
    with pytest.raises(ApiException) as exc:
        crd.replace_namespaced_custom_object(G, V, NS, VMIS, "a", renamed)
    assert exc.value.status == 400
    second["spec"]["domain"]["cpu"]["cores"] = 2
    replaced = crd.replace_namespaced_custom_object(G, V, NS, VMIS, "a", second)
    assert replaced["spec"]["domain"]["cpu"]["cores"] == 2
    assert int(replaced["metadata"]["resourceVersion"]) > int(second["metadata"]["resourceVersion"])


def test_merge_and_json_patch(crd: client.CustomObjectsApi) -> None:
    created = crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a", metadata={"annotations": {"keep": "1"}}))
    merged = crd.patch_namespaced_custom_object(
        G, V, NS, VMIS, "a", {"metadata": {"annotations": {"qat.intel.com/vfs": "0000:3d:01.1"}}}
    )
    assert merged["metadata"]["annotations"] == {"keep": "1", "qat.intel.com/vfs": "0000:3d:01.1"}
    removed = crd.patch_namespaced_custom_object(G, V, NS, VMIS, "a", {"metadata": {"annotations": {"keep": None}}})
    assert removed["metadata"]["annotations"] == {"qat.intel.com/vfs": "0000:3d:01.1"}

    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": removed["metadata"]["resourceVersion"]},
        {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
    ]
    patched = crd.patch_namespaced_custom_object(G, V, NS, VMIS, "a", ops, _content_type=JSON_PATCH)
    assert patched["metadata"]["finalizers"] == [FINALIZER]
    with pytest.raises(ApiException) as exc:  # the test op no longer holds
        crd.patch_namespaced_custom_object(G, V, NS, VMIS, "a", ops, _content_type=JSON_PATCH)
    assert exc.value.status == 422

    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"], "labels": {"x": "y"}}}
    with pytest.raises(ApiException) as exc:  # optimistic concurrency when the patch names an RV
        crd.patch_namespaced_custom_object(G, V, NS, VMIS, "a", stale)
    assert status_of(exc) == (409, "Conflict")
    fresh = {"metadata": {"resourceVersion": patched["metadata"]["resourceVersion"], "labels": {"x": "y"}}}
    assert crd.patch_namespaced_custom_object(G, V, NS, VMIS, "a", fresh)["metadata"]["labels"]["x"] == "y"


def test_noop_patch_writes_nothing(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    created = crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a", metadata={"annotations": {"a": "1"}}))
    rv = server.resource_version
    again = crd.patch_namespaced_custom_object(G, V, NS, VMIS, "a", {"metadata": {"annotations": {"a": "1"}}})
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert server.resource_version == rv


def test_strategic_merge_is_refused_for_custom_resources_only(
    server: FakeApiServer, crd: client.CustomObjectsApi, core: client.CoreV1Api
) -> None:
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a"))
    with pytest.raises(ApiException) as exc:
        crd.patch_namespaced_custom_object(
            G,
            V,
            NS,
            VMIS,
            "a",
            {"metadata": {"labels": {"x": "y"}}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert status_of(exc) == (415, "UnsupportedMediaType")

    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="virt-launcher-a", finalizers=["example.com/one"]),
        spec=client.V1PodSpec(containers=[client.V1Container(name="compute", image="x")]),
    )
    core.create_namespaced_pod(NS, pod)
    patched = core.patch_namespaced_pod(
        "virt-launcher-a",
        NS,
        {"metadata": {"finalizers": ["example.com/two"]}, "spec": {"containers": [{"name": "compute", "image": "y"}]}},
    )
    assert server.requests("PATCH", "/pods/")[-1].content_type == "application/strategic-merge-patch+json"
    assert patched.metadata.finalizers == ["example.com/one", "example.com/two"]  # merged, not replaced
    assert [(c.name, c.image) for c in patched.spec.containers] == [("compute", "y")]  # merged by name
    assert patched.status.phase == "Pending"


# --- status subresource and generation ---------------------------------------------


def test_without_status_subresource_status_goes_through_the_main_resource(
    server: FakeApiServer, crd: client.CustomObjectsApi
) -> None:
    created = crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a", status={"phase": "Pending"}))
    assert created["status"] == {"phase": "Pending"}  # kept on create: there is no status subresource
    with pytest.raises(ApiException) as exc:
        crd.patch_namespaced_custom_object_status(G, V, NS, VMIS, "a", {"status": {"phase": "Running"}})
    assert exc.value.status == 404
    running = crd.patch_namespaced_custom_object(G, V, NS, VMIS, "a", {"status": {"phase": "Running"}})
    assert running["status"] == {"phase": "Running"}
    assert running["metadata"]["generation"] == 2  # apiextensions: any non-metadata change bumps generation
    annotated = crd.patch_namespaced_custom_object(G, V, NS, VMIS, "a", {"metadata": {"annotations": {"a": "b"}}})
    assert annotated["metadata"]["generation"] == 2  # metadata-only changes do not


def test_with_status_subresource_status_and_spec_are_split(make_server: Callable[..., FakeApiServer]) -> None:
    server = make_server(vmi_status_subresource=True)
    crd = client.CustomObjectsApi(server.api_client())
    created = crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a", status={"phase": "Pending"}))
    assert "status" not in created  # dropped on create
    via_status = crd.patch_namespaced_custom_object_status(
        G, V, NS, VMIS, "a", {"status": {"phase": "Running"}, "spec": {"x": 1}, "metadata": {"labels": {"l": "v"}}}
    )
    assert via_status["status"] == {"phase": "Running"}
    assert "x" not in via_status["spec"] and "l" not in via_status["metadata"]["labels"]
    assert via_status["metadata"]["generation"] == 1
    via_main = crd.patch_namespaced_custom_object(
        G, V, NS, VMIS, "a", {"status": {"phase": "Failed"}, "spec": {"x": 1}}
    )
    assert via_main["status"] == {"phase": "Running"} and via_main["spec"]["x"] == 1
    assert via_main["metadata"]["generation"] == 2
    current = crd.get_namespaced_custom_object_status(G, V, NS, VMIS, "a")
    current["status"]["phase"] = "Succeeded"
    replaced = crd.replace_namespaced_custom_object_status(G, V, NS, VMIS, "a", current)
    assert replaced["status"]["phase"] == "Succeeded" and replaced["metadata"]["generation"] == 2


def test_discovery_lists_the_status_subresource_only_when_enabled(make_server: Callable[..., FakeApiServer]) -> None:
    def vmi_resources(server: FakeApiServer) -> set[str]:
        resources = client.CustomObjectsApi(server.api_client()).get_api_resources(G, V).resources
        return {r.name for r in resources}

    assert vmi_resources(make_server()) == {"virtualmachineinstances", "kubevirts", "kubevirts/status"}
    with_status = make_server(vmi_status_subresource=True)
    assert "virtualmachineinstances/status" in vmi_resources(with_status)

    api = with_status.api_client()
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = {g.name: g.preferred_version.group_version for g in client.ApisApi(api).get_api_versions().groups}
    assert groups == {
        "kubevirt.io": "kubevirt.io/v1",
        "events.k8s.io": "events.k8s.io/v1",
        "admissionregistration.k8s.io": "admissionregistration.k8s.io/v1",
        "apiextensions.k8s.io": "apiextensions.k8s.io/v1",
        "apps": "apps/v1",
        "coordination.k8s.io": "coordination.k8s.io/v1",
        "k8s.cni.cncf.io": "k8s.cni.cncf.io/v1",
    }
    core_names = {r.name for r in client.CoreV1Api(api).get_api_resources().resources}
    assert core_names == {"configmaps", "events", "nodes", "nodes/status", "pods", "pods/status", "secrets"}
    assert {r.name for r in client.EventsV1Api(api).get_api_resources().resources} == {"events"}
    assert client.VersionApi(api).get_code().major == "1"
    with pytest.raises(ApiException) as exc:
        client.CustomObjectsApi(api).get_api_resources("nope.io", "v1")
    assert exc.value.status == 404


# --- deletion and finalizers ---------------------------------------------------------


def test_finalizers_hold_deletion_until_removed(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a", metadata={"finalizers": [FINALIZER]}))
    seen = Collector(crd.list_namespaced_custom_object, G, V, NS, VMIS, resource_version=str(server.resource_version))
    deleting = crd.delete_namespaced_custom_object(G, V, NS, VMIS, "a")
    assert deleting["metadata"]["deletionTimestamp"] and deleting["metadata"]["deletionGracePeriodSeconds"] == 0
    assert crd.get_namespaced_custom_object(G, V, NS, VMIS, "a")["metadata"]["finalizers"] == [FINALIZER]
    again = crd.delete_namespaced_custom_object(G, V, NS, VMIS, "a")  # idempotent while pending
    assert again["metadata"]["resourceVersion"] == deleting["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as exc:
        crd.patch_namespaced_custom_object(G, V, NS, VMIS, "a", {"metadata": {"finalizers": [FINALIZER, "x.io/y"]}})
    assert status_of(exc) == (422, "Invalid")

    ops = [{"op": "remove", "path": "/metadata/finalizers/0"}]
    last = crd.patch_namespaced_custom_object(G, V, NS, VMIS, "a", ops, _content_type=JSON_PATCH)
    assert last["metadata"]["finalizers"] == []  # the writer gets the object it asked for
    with pytest.raises(ApiException) as exc:
        crd.get_namespaced_custom_object(G, V, NS, VMIS, "a")
    assert exc.value.status == 404
    assert seen.wait_for(2) == [("MODIFIED", "a"), ("DELETED", "a")]
    seen.stop()
    marked, deleted = (e["raw_object"]["metadata"] for e in seen.events)
    assert marked["generation"] == 2  # the deletion request bumps generation, like markAsDeleting()
    assert deleted["finalizers"] == [FINALIZER]  # DELETED carries the last stored state...
    assert int(deleted["resourceVersion"]) == server.resource_version  # ...at the deletion's RV

    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("b"))
    gone = crd.delete_namespaced_custom_object(G, V, NS, VMIS, "b")
    assert gone["metadata"]["name"] == "b" and server.objects(VMIS) == []


def test_delete_preconditions_and_status_answer_for_core_types(
    crd: client.CustomObjectsApi, core: client.CoreV1Api
) -> None:
    created = crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a"))
    with pytest.raises(ApiException) as exc:
        crd.delete_namespaced_custom_object(
            G, V, NS, VMIS, "a", body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="x"))
        )
    assert status_of(exc) == (409, "Conflict")
    uid = created["metadata"]["uid"]
    crd.delete_namespaced_custom_object(
        G, V, NS, VMIS, "a", body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
    )
    core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c")))
    answer = core.delete_namespaced_config_map("c", NS)  # built-in types answer with a Status (the client: a dict)
    assert answer["kind"] == "Status" and answer["status"] == "Success" and answer["details"]["name"] == "c"


# --- watch ---------------------------------------------------------------------------


def test_watch_from_list_rv_sees_only_this_nodes_vmis(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("old", "node-a"))
    rv = crd.list_namespaced_custom_object(G, V, NS, VMIS, label_selector=f"{NODE_LABEL}=node-a")["metadata"][
        "resourceVersion"
    ]
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("mine", "node-a"))
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("theirs", "node-b"))
    crd.patch_namespaced_custom_object(G, V, NS, VMIS, "mine", {"status": {"phase": "Running"}})
    crd.patch_namespaced_custom_object(G, V, NS, VMIS, "theirs", {"status": {"phase": "Running"}})
    crd.patch_namespaced_custom_object(G, V, NS, VMIS, "old", {"metadata": {"labels": {NODE_LABEL: "node-b"}}})
    crd.patch_namespaced_custom_object(G, V, NS, VMIS, "theirs", {"metadata": {"labels": {NODE_LABEL: "node-a"}}})
    crd.delete_namespaced_custom_object(G, V, NS, VMIS, "mine")

    w = watch.Watch()
    seen = []
    for event in w.stream(
        crd.list_namespaced_custom_object,
        G,
        V,
        NS,
        VMIS,
        resource_version=rv,
        label_selector=f"{NODE_LABEL}=node-a",
        timeout_seconds=3,
    ):
        obj = event["object"]
        seen.append((event["type"], obj["metadata"]["name"], obj["metadata"]["labels"][NODE_LABEL]))
        if len(seen) == 5:
            w.stop()
    assert seen == [
        ("ADDED", "mine", "node-a"),
        ("MODIFIED", "mine", "node-a"),
        ("DELETED", "old", "node-a"),  # relabelled away: DELETED with its last matching state
        ("ADDED", "theirs", "node-a"),  # relabelled in
        ("DELETED", "mine", "node-a"),
    ]
    assert w.resource_version == str(server.resource_version)


def test_live_watch_and_watch_from_zero(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("existing"))
    live = Collector(crd.list_namespaced_custom_object, G, V, NS, VMIS, resource_version="0")
    server.wait_for_watches(1, plural=VMIS)
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("new"))
    crd.create_namespaced_custom_object(G, V, "elsewhere", VMIS, vmi("other-namespace"))
    assert live.wait_for(2) == [("ADDED", "existing"), ("ADDED", "new")]  # "0": synthetic ADDED first
    live.stop()
    assert live.error is None


def test_bookmarks_carry_only_the_resource_version(
    server: FakeApiServer, crd: client.CustomObjectsApi, core: client.CoreV1Api
) -> None:
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a"))
    rv = str(server.resource_version)
    events = list(
        watch.Watch().stream(
            crd.list_namespaced_custom_object,
            G,
            V,
            NS,
            VMIS,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=1,
        )
    )
    bookmarks = [e["raw_object"] for e in events if e["type"] == "BOOKMARK"]
    assert len(bookmarks) >= 3  # every 0.2 s over 1 s
    assert all(
        b == {"kind": "VirtualMachineInstance", "apiVersion": "kubevirt.io/v1", "metadata": {"resourceVersion": rv}}
        for b in bookmarks
    )

    short = watch.Watch()  # a typed watch, shorter than the interval, still gets one
    core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c")))
    slow = FakeApiServer(bookmark_interval=30)
    with slow:
        slow_core = client.CoreV1Api(slow.api_client())
        types = [
            e["type"]
            for e in short.stream(
                slow_core.list_namespaced_config_map,
                NS,
                resource_version="0",
                allow_watch_bookmarks=True,
                timeout_seconds=1,
            )
        ]
    assert types == ["BOOKMARK"] and short.resource_version == "0"
    not_allowed = Collector(crd.list_namespaced_custom_object, G, V, NS, VMIS, resource_version=rv)
    time.sleep(0.5)
    not_allowed.stop()
    assert not_allowed.events == []


def test_watch_from_compacted_history_is_410_gone(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a"))
    old_rv = str(server.resource_version)
    live = Collector(crd.list_namespaced_custom_object, G, V, NS, VMIS, resource_version=old_rv)
    server.wait_for_watches(1)
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("b"))
    server.compact()
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("c"))
    assert live.wait_for(2) == [("ADDED", "b"), ("ADDED", "c")]  # open watches survive compaction
    live.stop()

    with pytest.raises(ApiException) as exc:
        for _ in watch.Watch().stream(
            crd.list_namespaced_custom_object, G, V, NS, VMIS, resource_version=old_rv, timeout_seconds=2
        ):
            pass
    assert exc.value.status == 410
    record = server.requests("GET", VMIS, watch=True)[-1]
    assert record.status == 200 and record.query["resourceVersion"] == old_rv  # 410 arrives as an ERROR event
    current = Collector(
        crd.list_namespaced_custom_object, G, V, NS, VMIS, resource_version=str(server.resource_version)
    )
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("d"))
    assert current.wait_for(1) == [("ADDED", "d")]
    current.stop()
    assert current.error is None


def test_drop_watches_cuts_the_stream(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    live = Collector(crd.list_namespaced_custom_object, G, V, NS, VMIS, timeout_seconds=30)
    server.wait_for_watches(1)
    started = time.monotonic()
    assert server.drop_watches() == 1
    assert live.done.wait(3), "the watch did not end"
    assert time.monotonic() - started < 3
    assert isinstance(live.error, urllib3.exceptions.ProtocolError)  # a cut, not a clean end of stream
    assert server.active_watches == 0
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("after"))  # the server is still fine


def test_stopped_client_watch_is_reaped(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    live = Collector(crd.list_namespaced_custom_object, G, V, NS, VMIS, timeout_seconds=30)
    server.wait_for_watches(1)
    live.stop()
    deadline = time.monotonic() + 3
    while server.active_watches and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.active_watches == 0


def test_pause_and_resume_watches(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    live = Collector(crd.list_namespaced_custom_object, G, V, NS, VMIS, resource_version=str(server.resource_version))
    server.wait_for_watches(1)
    server.pause_watches()
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a"))
    time.sleep(0.3)
    assert live.summary() == []
    server.resume_watches()
    assert live.wait_for(1) == [("ADDED", "a")]
    live.stop()


# --- injected faults and the request log ---------------------------------------------------


def test_fail_next_injects_errors(make_server: Callable[..., FakeApiServer]) -> None:
    server = make_server(vmi_status_subresource=True)
    crd = client.CustomObjectsApi(server.api_client())
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a"))
    server.fail_next("PATCH", r"/virtualmachineinstances/a/status$", 409)
    with pytest.raises(ApiException) as exc:
        crd.patch_namespaced_custom_object_status(G, V, NS, VMIS, "a", {"status": {"phase": "Running"}})
    assert status_of(exc) == (409, "Conflict")
    assert crd.patch_namespaced_custom_object_status(G, V, NS, VMIS, "a", {"status": {"phase": "Running"}})[
        "status"
    ] == {"phase": "Running"}

    server.fail_next("GET", VMIS, 500, times=2, watch=False)
    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            crd.list_namespaced_custom_object(G, V, NS, VMIS)
        assert status_of(exc) == (500, "InternalError")
    assert names(crd.list_namespaced_custom_object(G, V, NS, VMIS)["items"]) == ["a"]

    server.fail_next("GET", VMIS, 503, watch=True)
    with pytest.raises(ApiException) as exc:
        for _ in watch.Watch().stream(crd.list_namespaced_custom_object, G, V, NS, VMIS, timeout_seconds=1):
            pass
    assert exc.value.status == 503


def test_request_log_shows_what_was_written(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("a"))
    server.clear_requests()
    crd.patch_namespaced_custom_object(
        G, V, NS, VMIS, "a", {"metadata": {"annotations": {"qat.intel.com/vfs": "1"}, "finalizers": [FINALIZER]}}
    )
    with pytest.raises(ApiException):  # there is no status to replace
        crd.patch_namespaced_custom_object(
            G, V, NS, VMIS, "a", [{"op": "replace", "path": "/status", "value": {}}], _content_type=JSON_PATCH
        )
    log = server.requests()
    assert [(r.method, r.content_type, r.status) for r in log] == [
        ("PATCH", "application/merge-patch+json", 200),
        ("PATCH", JSON_PATCH, 422),
    ]
    assert log[0].path == f"/apis/{G}/{V}/namespaces/{NS}/{VMIS}/a"
    assert log[0].touched == ["metadata.annotations.qat.intel.com/vfs", "metadata.finalizers"]
    assert log[1].touched == ["status"]
    assert not server.requests("PUT")


# --- events --------------------------------------------------------------------------------


def test_events_through_both_apis(server: FakeApiServer, core: client.CoreV1Api) -> None:
    events_v1 = client.EventsV1Api(server.api_client())
    core.create_namespaced_event(
        NS,
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(name="a.1"),
            reason="VFAttached",
            message="attached 0000:3d:01.1",
            type="Normal",
            involved_object=client.V1ObjectReference(
                kind="VirtualMachineInstance", name="a", namespace=NS, api_version=f"{G}/{V}"
            ),
        ),
    )
    events_v1.create_namespaced_event(
        NS,
        client.EventsV1Event(
            metadata=client.V1ObjectMeta(generate_name="b."),
            reason="VFReleased",
            note="released",
            type="Warning",
            action="Release",
            reporting_controller="qat.intel.com/handler",
            reporting_instance="qat-handler-node-a",
            event_time=EVENT_TIME,
            regarding=client.V1ObjectReference(kind="VirtualMachineInstance", name="b", namespace=NS),
        ),
    )

    as_core = core.list_namespaced_event(NS).items
    assert [(e.reason, e.message, e.involved_object.name) for e in as_core] == [
        ("VFAttached", "attached 0000:3d:01.1", "a"),
        ("VFReleased", "released", "b"),
    ]
    assert as_core[1].reporting_component == "qat.intel.com/handler"
    # Read raw: a core event without eventTime has "eventTime": null in events.k8s.io/v1, which the
    # client's EventsV1Event model refuses to deserialize (it would fail the same way on a real server).
    as_v1 = json.loads(events_v1.list_namespaced_event(NS, _preload_content=False).data)["items"]
    assert [(e["reason"], e["note"], e["regarding"]["name"]) for e in as_v1] == [
        ("VFAttached", "attached 0000:3d:01.1", "a"),
        ("VFReleased", "released", "b"),
    ]
    assert as_v1[0]["eventTime"] is None and "involvedObject" not in as_v1[0]
    by_object = core.list_namespaced_event(NS, field_selector="involvedObject.name=b,reason=VFReleased").items
    assert [e.reason for e in by_object] == ["VFReleased"]
    assert [e["reason"] for e in server.objects("events", group="")] == ["VFAttached", "VFReleased"]

    with pytest.raises(ApiException) as exc:  # events.k8s.io/v1 requires reportingController, action, ...
        events_v1.create_namespaced_event(
            NS,
            client.EventsV1Event(
                metadata=client.V1ObjectMeta(name="c"), reason="R", type="Normal", event_time=EVENT_TIME
            ),
        )
    assert status_of(exc) == (422, "Invalid")
    causes = [c["message"] for c in json.loads(exc.value.body)["details"]["causes"]]
    assert causes == [
        "reportingController: Required value",
        "reportingInstance: Required value",
        "action: Required value",
    ]
    with pytest.raises(ApiException) as exc:  # the involved object must be in the event's namespace
        core.create_namespaced_event(
            NS,
            client.CoreV1Event(
                metadata=client.V1ObjectMeta(name="d"),
                reason="R",
                involved_object=client.V1ObjectReference(kind="VirtualMachineInstance", name="d", namespace="other"),
            ),
        )
    assert status_of(exc) == (422, "Invalid")


# --- hooks, concurrency, kubeconfig -------------------------------------------------------------


def test_put_object_and_remove_object_hooks(server: FakeApiServer, crd: client.CustomObjectsApi) -> None:
    live = Collector(crd.list_namespaced_custom_object, G, V, NS, VMIS, resource_version=str(server.resource_version))
    server.wait_for_watches(1)
    put = server.put_object(
        vmi("a", status={"phase": "Running", "nodeName": "node-a"}, metadata={"finalizers": [FINALIZER]})
    )
    assert crd.get_namespaced_custom_object(G, V, NS, VMIS, "a")["status"]["nodeName"] == "node-a"
    server.put_object({**put, "status": {"phase": "Succeeded"}})
    assert [o["status"]["phase"] for o in server.objects(VMIS, NS)] == ["Succeeded"]
    assert server.get_object(VMIS, NS, "a")["metadata"]["uid"] == put["metadata"]["uid"]
    server.remove_object(VMIS, NS, "a")
    assert live.wait_for(3) == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    live.stop()
    assert server.get_object(VMIS, NS, "a") is None


def test_concurrent_read_modify_write_is_serialised(server: FakeApiServer) -> None:
    crd = client.CustomObjectsApi(server.api_client())
    crd.create_namespaced_custom_object(G, V, NS, VMIS, vmi("counter", metadata={"annotations": {"n": "0"}}))
    conflicts = []

    def bump(times: int) -> None:
        api = client.CustomObjectsApi(server.api_client())
        for _ in range(times):
            while True:
                cur = api.get_namespaced_custom_object(G, V, NS, VMIS, "counter")
                cur["metadata"]["annotations"]["n"] = str(int(cur["metadata"]["annotations"]["n"]) + 1)
                try:
                    api.replace_namespaced_custom_object(G, V, NS, VMIS, "counter", cur)
                    break
                except ApiException as e:
                    assert e.status == 409
                    conflicts.append(1)

    threads = [threading.Thread(target=bump, args=(10,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert crd.get_namespaced_custom_object(G, V, NS, VMIS, "counter")["metadata"]["annotations"]["n"] == "60"
    assert server.resource_version == 61


def test_kubeconfig_for_in_process_and_subprocess_clients(server: FakeApiServer, tmp_path: Any) -> None:
    path = server.write_kubeconfig(tmp_path / "kubeconfig", namespace="kubevirt")
    api = config.new_client_from_config(config_file=str(path))
    client.CustomObjectsApi(api).create_namespaced_custom_object(G, V, "kubevirt", VMIS, vmi("a"))
    script = (
        "from kubernetes import client, config\n"
        "config.load_kube_config()\n"
        "print(len(client.CustomObjectsApi().list_cluster_custom_object("
        f"'{G}', '{V}', '{VMIS}')['items']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "KUBECONFIG": str(path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.strip() == "1"
