"""A controller against the fake API server, and helpers to play scheduler and kubelet by hand."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from handler.controller.controller import Controller, ControllerSettings
from handler.core.backoff import Backoff
from handler.core.launcher_pod import LauncherPodSettings
from handler.kube.informer import WatchSettings
from tests.support.fakekube import FakeApiServer

WATCH = WatchSettings(watch_seconds=30, inactivity_seconds=10, backoff=Backoff(0.05, 0.5))
SETTINGS = ControllerSettings(LauncherPodSettings("qat-handler:0.1.0"), workers=2, retry_initial=0.05, retry_max=0.5)


def vmi(name: str, qats: int = 1, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "domain": {
                "cpu": {"cores": 1},
                "memory": {"guest": "256Mi"},
                "devices": {"qats": [{"name": f"qat{i}", "deviceName": "qat.intel.com/generic"} for i in range(qats)]},
            },
            **spec,
        },
    }


def create_vmi(server: FakeApiServer, body: dict[str, Any]) -> dict[str, Any]:
    from kubernetes import client

    custom = client.CustomObjectsApi(server.api_client())
    ns = body["metadata"]["namespace"]
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        "kubevirt.io", "v1", ns, "virtualmachineinstances", body
    )
    return created


def start_controller(server: FakeApiServer, lead: bool = True) -> Controller:
    controller = Controller(server.api_client(), SETTINGS, WATCH)
    controller.start()
    assert controller.wait_synced(10)
    if lead:
        controller.lead()
    return controller


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll until ``check()`` is truthy; generous bound, never a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def pods_of(server: FakeApiServer, uid: str) -> list[dict[str, Any]]:
    return [
        p for p in server.objects("pods") if (p["metadata"].get("labels") or {}).get("kubevirt.io/created-by") == uid
    ]


def phase(server: FakeApiServer, name: str, namespace: str = "default") -> str:
    obj = server.get_object("virtualmachineinstances", namespace, name)
    return str(((obj or {}).get("status") or {}).get("phase") or "")


def set_pod(server: FakeApiServer, pod: dict[str, Any], *, node: str = "", **status: Any) -> None:
    """Act as scheduler (node) and kubelet (status) on a pod."""
    fresh = copy.deepcopy(server.get_object("pods", pod["metadata"]["namespace"], pod["metadata"]["name"]))
    assert fresh is not None
    if node:
        fresh["spec"]["nodeName"] = node
    fresh["status"] = {**(fresh.get("status") or {}), **status}
    server.put_object(fresh)


def unschedulable(message: str) -> dict[str, Any]:
    return {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
