"""Kubernetes containerDisks and cloud-init Secrets, against the fake API server.

The launcher pod's disk container is played by a pod object with a running container status
and a process in a host tree (``<host_root>/proc/<pid>/cgroup`` naming the container ID, its
root holding /disk/disk.qcow2), as the agent sees them with hostPID.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handler.core.disk_sources import ContainerDisk
from handler.core.vmi_parse import parse_vmi
from handler.host.image_cache import Failed, Lookup, Pending, Ready
from handler.kube.container_disks import LauncherContainerDisks
from handler.kube.secrets import KubeSecretReader
from tests.support.fakekube import FakeApiServer
from tests.support.oci_images import have_tools, qcow2_disk

pytestmark = pytest.mark.skipif(not have_tools("qemu-img"), reason="needs qemu-img")
NODE = "node01"
UID = "6a1f0c9e-0001-4d6b-9e51-0000000000cc"
DIGEST = "ab" * 32
CONTAINER_ID = "0123456789abcdef" * 4
IMAGE = "example.org/disks/tiny:1"


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    server.start()
    yield server
    server.stop()


def vmi() -> Any:
    return parse_vmi(
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "vm", "namespace": "ns", "uid": UID},
            "spec": {
                "domain": {"memory": {"guest": "1Gi"}, "devices": {"disks": [{"name": "containerdisk"}]}},
                "volumes": [{"name": "containerdisk", "containerDisk": {"image": IMAGE}}],
            },
        }
    )


def pod(
    state: dict[str, Any] | None, containers: tuple[str, ...] = ("compute", "volumecontainerdisk")
) -> dict[str, Any]:
    statuses = []
    if state is not None:
        statuses.append(
            {
                "name": "volumecontainerdisk",
                "image": IMAGE,
                "imageID": f"{IMAGE.split(':')[0]}@sha256:{DIGEST}",
                "containerID": f"containerd://{CONTAINER_ID}",
                "state": state,
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "virt-launcher-vm", "namespace": "ns", "labels": {"kubevirt.io/created-by": UID}},
        "spec": {"nodeName": NODE, "containers": [{"name": n, "image": IMAGE} for n in containers]},
        "status": {"containerStatuses": statuses},
    }


def host_with_container(root: Path) -> Path:
    process = root / "proc" / "4242"
    (process / "root" / "disk").mkdir(parents=True)
    (process / "cgroup").write_text(f"0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{CONTAINER_ID}.scope\n")
    (root / "proc" / "17").mkdir()
    (root / "proc" / "17" / "cgroup").write_text("0::/system.slice/libvirtd.service\n")
    return qcow2_disk(process / "root" / "disk" / "disk.qcow2", data=b"FROM-THE-LAUNCHER")


def pods_of(server: FakeApiServer) -> Any:
    """What the agent's pod informer holds: every pod, as the API serves it."""
    return lambda: server.objects("pods")


def settle(disks: LauncherContainerDisks, bound: float = 60.0) -> Lookup:
    deadline = time.monotonic() + bound
    while True:
        found = disks.lookup(ContainerDisk(IMAGE, None, "IfNotPresent"), vmi(), "containerdisk")
        if not isinstance(found, Pending):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.02)


def test_the_disk_is_copied_once_from_the_launcher_container(server: FakeApiServer, tmp_path: Path) -> None:
    source = host_with_container(tmp_path / "host")
    disks = LauncherContainerDisks(pods_of(server), tmp_path / "host" / "proc", tmp_path / "cache", NODE)
    first = disks.lookup(ContainerDisk(IMAGE, None, "IfNotPresent"), vmi(), "containerdisk")
    assert first == Pending("waits for the launcher pod on this node")

    server.put_object(pod({"waiting": {"reason": "ContainerCreating"}}))
    found = disks.lookup(ContainerDisk(IMAGE, None, "IfNotPresent"), vmi(), "containerdisk")
    assert found == Pending("waits for kubelet to pull the image")

    server.put_object(pod({"running": {"startedAt": "2026-01-01T00:00:00Z"}}))
    ready = settle(disks)
    assert isinstance(ready, Ready) and ready.format == "qcow2"
    assert ready.path == tmp_path / "cache" / "disks" / DIGEST / "disk.qcow2"
    assert ready.path.read_bytes() == source.read_bytes()
    source.unlink()  # the container went away: the cached copy still serves the image
    assert disks.lookup(ContainerDisk(IMAGE, None, "IfNotPresent"), vmi(), "containerdisk") == ready
    disks.close()


@pytest.mark.parametrize(
    ("state", "containers", "problem"),
    [
        (None, ("compute",), "has no container volumecontainerdisk in its launcher pod (the pod must carry the image)"),
        (
            {"waiting": {"reason": "ErrImagePull", "message": "not found"}},
            ("compute", "volumecontainerdisk"),
            "could not be pulled by kubelet (ErrImagePull: not found)",
        ),
    ],
)
def test_a_pod_without_the_image_fails_in_one_line(
    server: FakeApiServer, tmp_path: Path, state: dict[str, Any] | None, containers: tuple[str, ...], problem: str
) -> None:
    server.put_object(pod(state, containers))
    disks = LauncherContainerDisks(pods_of(server), tmp_path / "host" / "proc", tmp_path / "cache", NODE)
    assert disks.lookup(ContainerDisk(IMAGE, None, "IfNotPresent"), vmi(), "containerdisk") == Failed(problem)


def test_a_container_whose_process_is_not_on_this_host_fails(server: FakeApiServer, tmp_path: Path) -> None:
    (tmp_path / "host" / "proc" / "17").mkdir(parents=True)
    (tmp_path / "host" / "proc" / "17" / "cgroup").write_text("0::/system.slice/libvirtd.service\n")
    server.put_object(pod({"running": {}}))
    disks = LauncherContainerDisks(pods_of(server), tmp_path / "host" / "proc", tmp_path / "cache", NODE)
    found = settle(disks)
    assert isinstance(found, Failed)
    assert found.problem == f"is not a usable disk image (no process of container {CONTAINER_ID[:12]} on this host)"


def test_secrets_are_read_decoded_and_a_missing_one_is_none(server: FakeApiServer) -> None:
    server.put_object(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "userdata", "namespace": "ns"},
            "data": {"userdata": base64.b64encode(b"#cloud-config\npassword: x\n").decode()},
        }
    )
    reader = KubeSecretReader(server.api_client())
    assert reader.read("ns", "userdata") == {"userdata": b"#cloud-config\npassword: x\n"}
    assert reader.read("ns", "absent") is None
    assert reader.read("other", "userdata") is None


def test_a_disk_behind_a_symlink_is_refused(server: FakeApiServer, tmp_path: Path) -> None:
    source = host_with_container(tmp_path / "host")
    secret = tmp_path / "host-secret"
    secret.write_text("host file\n")
    source.unlink()
    source.symlink_to(secret)
    server.put_object(pod({"running": {}}))
    disks = LauncherContainerDisks(pods_of(server), tmp_path / "host" / "proc", tmp_path / "cache", NODE)
    found = settle(disks)
    assert found == Failed("is not a usable disk image (/disk/disk.qcow2 in the image goes through a symlink)")


def test_without_the_hosts_proc_the_line_says_what_to_mount(server: FakeApiServer, tmp_path: Path) -> None:
    server.put_object(pod({"running": {}}))
    proc = tmp_path / "host" / "proc"
    disks = LauncherContainerDisks(pods_of(server), proc, tmp_path / "cache", NODE)
    assert settle(disks) == Failed(
        f"is not a usable disk image (the host's processes are not visible at {proc} (mount the host's /proc there))"
    )
