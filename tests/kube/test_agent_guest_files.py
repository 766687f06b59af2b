"""The Kubernetes agent with guest files: a VMI whose containerDisk kubelet pulled as a
container of its launcher pod, and whose cloud-init user data is in a Secret, on the fake
API server and test:///default. The container's process is a directory in the simulated
host's /proc (its cgroup names the container ID; its root holds /disk)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pycdlib
from lxml import etree

from handler.core.vmi import NODE_LABEL
from handler.kube.launcher_pods import CREATED_BY_LABEL
from tests.kube.agent_harness import GROUP, NODE, QAT_RESOURCE, VERSION, VMIS, Cluster, eventually
from tests.support.oci_images import qcow2_disk

CONTAINER_ID = "fedcba9876543210" * 4
DIGEST = "cd" * 32
IMAGE = "example.org/disks/fedora:39"


def vmi_body(cluster: Cluster) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "cloudy", "namespace": cluster.namespace, "labels": {NODE_LABEL: NODE}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "domain": {
                "memory": {"guest": "1Gi"},
                "devices": {
                    "disks": [{"name": "containerdisk"}, {"name": "cloudinitdisk"}],
                    "qats": [{"name": "qat1", "deviceName": QAT_RESOURCE}],
                },
            },
            "volumes": [
                {"name": "containerdisk", "containerDisk": {"image": IMAGE}},
                {"name": "cloudinitdisk", "cloudInitNoCloud": {"secretRef": {"name": "cloudy-userdata"}}},
            ],
        },
    }


def launcher_pod(cluster: Cluster, vmi: dict[str, Any]) -> dict[str, Any]:
    running = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "virt-launcher-cloudy-x1",
            "namespace": cluster.namespace,
            "labels": {CREATED_BY_LABEL: vmi["metadata"]["uid"]},
        },
        "spec": {
            "nodeName": NODE,
            "containers": [
                {"name": "launcher", "image": "qat-handler"},
                {"name": "volumecontainerdisk", "image": IMAGE},
            ],
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "volumecontainerdisk",
                    "image": IMAGE,
                    "imageID": f"example.org/disks/fedora@sha256:{DIGEST}",
                    "containerID": f"containerd://{CONTAINER_ID}",
                    "state": running,
                }
            ],
        },
    }


def user_data_of(iso: Path) -> bytes:
    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    try:
        out = io.BytesIO()
        reader.get_file_from_iso_fp(out, rr_path="/user-data")
        return out.getvalue()
    finally:
        reader.close()


def test_a_container_disk_from_the_launcher_pod_and_user_data_from_a_secret(cluster: Cluster) -> None:
    cluster.set_configmap_gates("QAT")
    process = cluster.host_root / "proc" / "4242"
    (process / "root" / "disk").mkdir(parents=True)
    (process / "cgroup").write_text(f"0::/kubepods.slice/cri-containerd-{CONTAINER_ID}.scope\n")
    qcow2_disk(process / "root" / "disk" / "fedora.qcow2", data=b"FROM-KUBELET")
    cluster.server.put_object(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "cloudy-userdata", "namespace": cluster.namespace},
            "data": {"userdata": base64.b64encode(b"#cloud-config\npassword: fedora\n").decode()},
        }
    )
    cluster.start_agent()
    vmi = cluster.custom.create_namespaced_custom_object(GROUP, VERSION, cluster.namespace, VMIS, vmi_body(cluster))
    pod = cluster.server.put_object(launcher_pod(cluster, vmi))
    cluster.write_handoff(pod["metadata"]["uid"], vmi, {"QAT0": str(cluster.usable_vfs[0])})

    eventually(lambda: cluster.phase("cloudy") == "Running", timeout=60, what="cloudy Running")
    root = etree.fromstring(cluster.must_domain("cloudy").XMLDesc(0).encode())
    sources = {d.find("target").get("dev"): d.find("source").get("file") for d in root.iterfind("devices/disk")}
    folder = cluster.state_dir / "guests" / vmi["metadata"]["uid"]
    assert sources == {"vda": f"{folder}/disk0.qcow2", "vdb": f"{folder}/disk1.iso"}
    assert (cluster.state_dir / "images" / "disks" / DIGEST / "disk.qcow2").is_file()
    assert user_data_of(folder / "disk1.iso") == b"#cloud-config\npassword: fedora\n"
