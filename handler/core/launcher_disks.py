"""The launcher pod's part in containerDisks: one container per containerDisk volume, so that
kubelet pulls the image on the VMI's node, as KubeVirt does.

A disk image holds only /disk, so its container runs a static busybox that an init container
copies from the qat-handler image into a small emptyDir (KubeVirt does the same with its
container-disk binary). The container only has to stay up: the node agent reads the disk
through its root (handler/kube/container_disks.py).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from handler.core.disk_sources import ContainerDisk
from handler.core.fields import invalid
from handler.core.image_ref import LOCAL_TRANSPORTS
from handler.core.vmi import VMI

BINARY_VOLUME = "container-disk-binary"
BINARY_MOUNT = "/var/run/qat-handler/container-disk"
STATIC_BUSYBOX = "/bin/busybox"
"""busybox-static in the qat-handler image (deploy/image/build.sh)."""
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SMALL = {"cpu": "10m", "memory": "16Mi"}
_SECURE = {
    "privileged": False,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def container_name(volume: str) -> str:
    """KubeVirt's name for a containerDisk's container; the agent finds it by this name."""
    return f"volume{volume}"


def disk_pod_parts(vmi: VMI, launcher_image: str) -> tuple[list[Any], list[Any], list[Any]]:
    """(initContainers, containers, volumes) to add to the launcher pod; all empty without containerDisks."""
    disks = [(d.name, d.source) for d in vmi.disks if isinstance(d.source, ContainerDisk)]
    if not disks:
        return [], [], []
    mount = {"name": BINARY_VOLUME, "mountPath": BINARY_MOUNT}
    copy_binary = {
        "name": "container-disk-binary",
        "image": launcher_image,
        "command": ["cp", STATIC_BUSYBOX, f"{BINARY_MOUNT}/busybox"],
        "resources": {"requests": dict(_SMALL), "limits": dict(_SMALL)},
        "securityContext": copy.deepcopy(_SECURE),
        "volumeMounts": [mount],
    }
    containers = [_disk_container(name, source, mount) for name, source in disks]
    volumes = [{"name": BINARY_VOLUME, "emptyDir": {"sizeLimit": "8Mi"}}]
    return [copy_binary], containers, volumes


def _disk_container(volume: str, source: ContainerDisk, mount: dict[str, str]) -> dict[str, Any]:
    name = container_name(volume)
    if not _LABEL.match(name):
        raise invalid(f"volume {volume!r}", "cannot name a pod container", "use lower-case letters, digits and '-'")
    if source.image.partition(":")[0] in LOCAL_TRANSPORTS:
        raise invalid(
            f"volume {volume!r} containerDisk.image",
            f"{source.image!r} is a local layout, which kubelet cannot pull",
            "push the image to a registry the node can reach",
        )
    return {
        "name": name,
        "image": source.image,
        "imagePullPolicy": source.pull_policy,
        "command": [f"{BINARY_MOUNT}/busybox", "sleep", "2147483647"],
        "resources": {"requests": dict(_SMALL), "limits": dict(_SMALL)},
        "securityContext": copy.deepcopy(_SECURE),
        "volumeMounts": [{**mount, "readOnly": True}],
    }
