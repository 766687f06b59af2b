"""The informer on its own, against the fake API server: resources a cluster may not serve."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from handler.core.backoff import Backoff
from handler.kube.informer import Informer, WatchSettings
from tests.support.fakekube import FakeApiServer

FAST = WatchSettings(watch_seconds=2, inactivity_seconds=3, backoff=Backoff(0.05, 0.3))


def kubevirt_cr(name: str) -> dict[str, Any]:
    return {"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt", "metadata": {"name": name}, "spec": {}}


def wait(probe: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_a_resource_the_cluster_does_not_serve_counts_as_synced_and_empty() -> None:
    with FakeApiServer() as api:
        custom = client.CustomObjectsApi(api.api_client())
        api.fail_next("GET", r"/kubevirts$", 404, times=2)
        seen: list[tuple[str, str]] = []

        def kubevirts(**kwargs: Any) -> Any:
            return custom.list_namespaced_custom_object("kubevirt.io", "v1", "kubevirt", "kubevirts", **kwargs)

        informer = Informer(
            "kubevirt-cr",
            kubevirts,
            lambda kind, obj: seen.append((kind, obj["metadata"]["name"])),
            settings=FAST,
            optional=True,
        )
        informer.start()
        try:
            assert informer.synced.wait(5)
            assert informer.items() == []
            # once the CRD is served (the faults are used up), the object arrives on a later look
            custom.create_namespaced_custom_object("kubevirt.io", "v1", "kubevirt", "kubevirts", kubevirt_cr("kv"))
            wait(lambda: ("ADDED", "kv") in seen)
        finally:
            informer.stop()


def test_a_required_resource_keeps_retrying_and_is_not_synced() -> None:
    with FakeApiServer() as api:
        core = client.CoreV1Api(api.api_client())
        api.fail_next("GET", r"/configmaps$", 403, times=3)

        def configmaps(**kwargs: Any) -> Any:
            return core.list_namespaced_config_map("kubevirt", **kwargs)

        informer = Informer("kubevirt-config", configmaps, lambda _k, _o: None, settings=FAST)
        informer.start()
        try:
            assert not informer.synced.wait(0.1)
            assert informer.synced.wait(5)  # after three refusals the fourth list works
            assert len(api.requests("GET", r"/configmaps$", watch=False)) >= 4
        finally:
            informer.stop()
