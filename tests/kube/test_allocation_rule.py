"""The kubelet rule end to end: a handoff's BDFs must be what kubelet allocated to that pod.

A real KubeNode against the fake API server, with kubelet's pod-resources API served
by a fake kubelet over a real gRPC unix socket.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from kubernetes import client

from handler.core.bdf import Bdf
from handler.core.render_settings import RenderSettings
from handler.core.stop_policy import StopPolicy
from handler.host.domain_templates import load_templates
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host
from handler.kube.informer import WatchSettings
from handler.kube.node import KubeNode
from handler.kube.pod_resources import PodResourcesClient
from handler.settings import AgentSettings
from tests.support.fake_kubelet import FakeKubelet, launcher_pod
from tests.support.fakekube import FakeApiServer

GENERIC = "qat.intel.com/generic"
NODE = "node01"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeApiServer, FakeKubelet, KubeNode, Path]]:
    keeper = libvirt.open("test:///default")
    build_simulated_host(tmp_path / "host", SimulatedHost(pfs=(SimulatedPf("C62x", Bdf(0, 0x3D, 0, 0), vfs=4),)))
    with FakeApiServer() as api, FakeKubelet() as kubelet:
        core = client.CoreV1Api(api.api_client())
        core.create_namespaced_config_map(
            "kubevirt", {"metadata": {"name": "kubevirt-config"}, "data": {"feature-gates": "QAT"}}
        )
        settings = AgentSettings(
            connect="test:///default",
            state_dir=tmp_path / "state",
            run_dir=tmp_path / "run",
            host_root=tmp_path / "host",
            render=RenderSettings(log_dir=str(tmp_path / "state" / "logs"), templates=load_templates()),
        )
        node = KubeNode(
            settings,
            api.api_client(),
            NODE,
            FreshDeviceChecks(tmp_path / "host"),
            watch_settings=WatchSettings(watch_seconds=5, inactivity_seconds=5),
            pod_resources=PodResourcesClient(kubelet.socket_path),
        )
        node.start()
        try:
            yield api, kubelet, node, tmp_path / "run"
        finally:
            node.shutdown(StopPolicy.KEEP)
            for dom in keeper.listAllDomains():
                if dom.name().startswith("rule5-"):
                    if dom.isActive():
                        dom.destroy()
                    dom.undefine()
            keeper.close()


def start_vmi(api: FakeApiServer, run_dir: Path, name: str, handed_over: str) -> tuple[str, str]:
    custom = client.CustomObjectsApi(api.api_client())
    core = client.CoreV1Api(api.api_client())
    vmi = custom.create_namespaced_custom_object(
        "kubevirt.io",
        "v1",
        "rule5",
        "virtualmachineinstances",
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "labels": {"kubevirt.io/nodeName": NODE}},
            "spec": {
                "domain": {"memory": {"guest": "64Mi"}, "devices": {"qats": [{"name": "q", "deviceName": GENERIC}]}}
            },
        },
    )
    uid = vmi["metadata"]["uid"]
    pod = core.create_namespaced_pod(
        "rule5",
        {
            "metadata": {"name": f"virt-launcher-{name}", "labels": {"kubevirt.io/created-by": uid}},
            "spec": {"nodeName": NODE, "containers": [{"name": "compute", "image": "launcher"}]},
        },
    )
    slot = run_dir / "pods" / pod.metadata.uid
    slot.mkdir(parents=True)
    handoff = {
        "version": 1,
        "vmi": {"namespace": "rule5", "name": name, "uid": uid},
        "podUID": pod.metadata.uid,
        "env": {"QAT0": handed_over},
    }
    (slot / "handoff.json").write_text(json.dumps(handoff))
    return uid, f"virt-launcher-{name}"


def status_of(api: FakeApiServer, name: str) -> dict[str, Any]:
    obj = api.get_object("virtualmachineinstances", "rule5", name) or {}
    return obj.get("status") or {}


def wait(probe: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"timed out; last: {probe()!r}")


def test_handoff_matching_kubelet_allocation_starts(cluster: Any) -> None:
    api, kubelet, _node, run_dir = cluster
    kubelet.set_allocations([launcher_pod("rule5", "virt-launcher-good", {GENERIC: ["0000:3d:01.0"]})])
    start_vmi(api, run_dir, "good", "3D:01.0")
    assert wait(lambda: status_of(api, "good").get("phase") == "Running")


def test_handoff_naming_a_vf_kubelet_gave_to_no_one_is_refused(cluster: Any) -> None:
    api, kubelet, _node, run_dir = cluster
    kubelet.set_allocations([launcher_pod("rule5", "virt-launcher-forged", {GENERIC: ["0000:3d:01.1"]})])
    start_vmi(api, run_dir, "forged", "0000:3d:01.2")

    def refused() -> dict[str, Any] | None:
        conditions = {c["type"]: c for c in status_of(api, "forged").get("conditions", [])}
        synced = conditions.get("Synchronized")
        return synced if synced and synced.get("reason") == "HandoffRejected" else None

    condition = wait(refused)
    assert "0000:3d:01.2" in condition["message"] and "rule5/virt-launcher-forged" in condition["message"]
    assert status_of(api, "forged").get("phase") == "Scheduled"
    assert not [d for d in libvirt.open("test:///default").listAllDomains() if d.name() == "rule5_forged"]


def test_the_kubelet_rule_comes_before_the_host_rules(cluster: Any) -> None:
    """README, "Which devices reach a guest": in Kubernetes the kubelet check is rule 1. A VF that
    kubelet gave to no one and that does not exist on the host is refused for the handoff."""
    api, kubelet, _node, run_dir = cluster
    kubelet.set_allocations([launcher_pod("rule5", "virt-launcher-both", {GENERIC: ["0000:3d:01.1"]})])
    start_vmi(api, run_dir, "both", "0000:3d:07.0")  # no such VF on this host either

    def synced() -> dict[str, Any] | None:
        conditions = {c["type"]: c for c in status_of(api, "both").get("conditions", [])}
        found = conditions.get("Synchronized")
        return found if found and found.get("reason") != "WaitingForLauncher" else None

    condition = wait(synced)
    assert condition["reason"] == "HandoffRejected", condition
    assert "0000:3d:07.0" in condition["message"]
