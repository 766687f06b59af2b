"""containerDisks in the launcher pod: a container per volume, named as the agent looks for it."""

from __future__ import annotations

from typing import Any

import pytest

from handler.core.launcher_pod import LauncherPodSettings, render_launcher_pod
from handler.core.refusal import Refused


def manifest(volume: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "vm", "namespace": "ns", "uid": "6a1f0c9e-0001-4d6b-9e51-0000000000dd"},
        "spec": {
            "domain": {"memory": {"guest": "1Gi"}, "devices": {"disks": [{"name": volume}]}},
            "volumes": [{"name": volume, "containerDisk": {"image": image}}],
        },
    }


def test_each_container_disk_gets_a_container_running_its_image() -> None:
    pod = render_launcher_pod(manifest("root", "example.org/disks/a:1"), LauncherPodSettings(image="qh:1"))
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert sorted(containers) == ["launcher", "volumeroot"]
    assert containers["volumeroot"]["image"] == "example.org/disks/a:1"
    assert containers["volumeroot"]["command"][0] == "/var/run/qat-handler/container-disk/busybox"
    assert [c["image"] for c in pod["spec"]["initContainers"]] == ["qh:1"]


def test_a_pod_without_container_disks_is_unchanged() -> None:
    doc = manifest("root", "x/y:1")
    doc["spec"]["volumes"] = [{"name": "root", "hostDisk": {"path": "/r.img"}}]
    pod = render_launcher_pod(doc, LauncherPodSettings(image="qh:1"))
    assert "initContainers" not in pod["spec"] and len(pod["spec"]["containers"]) == 1


@pytest.mark.parametrize(
    ("volume", "image", "line"),
    [
        (
            "root",
            "oci:/srv/layout:a",
            "volume 'root' containerDisk.image 'oci:/srv/layout:a' is a local layout, which kubelet cannot pull; "
            "fix: push the image to a registry the node can reach",
        ),
        (
            "Root_Disk",
            "x/y:1",
            "volume 'Root_Disk' cannot name a pod container; fix: use lower-case letters, digits and '-'",
        ),
    ],
)
def test_what_kubelet_cannot_run_is_refused_in_one_line(volume: str, image: str, line: str) -> None:
    with pytest.raises(Refused) as caught:
        render_launcher_pod(manifest(volume, image), LauncherPodSettings(image="qh:1"))
    assert caught.value.refusal.line() == line
