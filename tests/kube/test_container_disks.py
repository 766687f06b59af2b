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
    state: dict[str, Any] | None,
    containers: tuple[str, ...] = ("compute", "volumecontainerdisk"),
    container_id: str = CONTAINER_ID,
) -> dict[str, Any]:
    statuses = []
    if state is not None:
        statuses.append(
            {
                "name": "volumecontainerdisk",
                "image": IMAGE,
                "imageID": f"{IMAGE.split(':')[0]}@sha256:{DIGEST}",
                "containerID": f"containerd://{container_id}",
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


def host_with_container(root: Path, container_id: str = CONTAINER_ID, pid: int = 4242) -> Path:
    process = root / "proc" / str(pid)
    (process / "root" / "disk").mkdir(parents=True)
    (process / "cgroup").write_text(f"0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{container_id}.scope\n")
    (root / "proc" / "17").mkdir(exist_ok=True)
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


class SteppingClock:
    """A fake monotonic clock; ``step`` seconds pass at every reading when set."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.step = 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_failed_copy_is_tried_again_after_the_retry_time(server: FakeApiServer, tmp_path: Path) -> None:
    proc = tmp_path / "host" / "proc"
    (proc / "17").mkdir(parents=True)
    (proc / "17" / "cgroup").write_text("0::/system.slice/libvirtd.service\n")
    server.put_object(pod({"running": {}}))
    clock = SteppingClock()
    disks = LauncherContainerDisks(pods_of(server), proc, tmp_path / "cache", NODE, retry_seconds=60, clock=clock)
    assert isinstance(settle(disks), Failed)  # the container's process is not there yet
    host_with_container(tmp_path / "host")
    clock.now += 59
    assert isinstance(settle(disks), Failed)  # still within the retry time: no new copy
    clock.now += 2
    ready = settle(disks)
    assert isinstance(ready, Ready) and ready.path.read_bytes().startswith(b"QFI")
    disks.close()


def test_another_container_is_tried_at_once_after_a_failure(server: FakeApiServer, tmp_path: Path) -> None:
    proc = tmp_path / "host" / "proc"
    (proc / "17").mkdir(parents=True)
    (proc / "17" / "cgroup").write_text("0::/system.slice/libvirtd.service\n")
    server.put_object(pod({"running": {}}))
    disks = LauncherContainerDisks(pods_of(server), proc, tmp_path / "cache", NODE, clock=SteppingClock())
    assert isinstance(settle(disks), Failed)
    restarted = "fedcba9876543210" * 4
    host_with_container(tmp_path / "host", restarted, pid=5151)
    server.put_object(pod({"running": {}}, container_id=restarted))  # kubelet restarted the container
    assert isinstance(settle(disks), Ready)
    disks.close()


def test_a_copy_that_takes_longer_than_the_timeout_is_given_up(server: FakeApiServer, tmp_path: Path) -> None:
    host_with_container(tmp_path / "host")
    server.put_object(pod({"running": {}}))
    clock = SteppingClock()
    disks = LauncherContainerDisks(
        pods_of(server),
        tmp_path / "host" / "proc",
        tmp_path / "cache",
        NODE,
        timeout_seconds=500,
        retry_seconds=1e12,  # the failure stands while the clock keeps jumping
        clock=clock,
    )
    clock.step = 1000.0  # every reading of the clock is 1,000 s later: the first chunk overruns
    assert settle(disks) == Failed("could not be copied from the launcher container within 500 s")
    assert not (tmp_path / "cache" / "disks").exists()  # nothing half-copied is served
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []
    disks.close()
