"""The VMI's launcher pod (KubeVirt's virt-launcher pod), rendered from the VMI manifest.

The controller creates this pod for every new VMI. It asks the device plugin for one unit
of ``deviceName`` per ``qats``/``hostDevices`` entry, reserves the guest's room on the node
for the scheduler, and runs ``qat-handler launcher``, which hands the VFs that the device
plugin gave it to the node agent through its handoff slot.

The guest runs in the host libvirtd's QEMU, outside this pod's cgroup, so cpu and memory
here only reserve room for the scheduler: the guest's cores and memory plus
``CPU_OVERHEAD_MILLIS`` and ``MEMORY_OVERHEAD_BYTES`` for QEMU itself (its own threads, page
tables, vfio DMA mappings and device emulation; KubeVirt adds a similar overhead).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handler.core.grace_margins import pod_grace
from handler.core.launcher_disks import disk_pod_parts
from handler.core.vmi import VMI
from handler.core.vmi_parse import parse_vmi

CREATED_BY_LABEL = "kubevirt.io/created-by"
"""KubeVirt's label on a virt-launcher pod: the UID of the VMI it runs."""
APP_LABEL = "kubevirt.io"
APP_VALUE = "virt-launcher"
ID_LABEL = "vmi.kubevirt.io/id"
DOMAIN_ANNOTATION = "kubevirt.io/domain"

CPU_OVERHEAD_MILLIS = 100
MEMORY_OVERHEAD_BYTES = 256 * 1024**2
SLOT_MOUNT = "/var/run/qat-handler/slot"
LAUNCHER_UID = 107
"""The qemu user's uid on Debian: an unprivileged id that owns nothing on the node."""

# Copied from the VMI's spec to the pod's as written: only the scheduler reads them.
SCHEDULING_FIELDS = ("nodeSelector", "affinity", "tolerations", "priorityClassName", "schedulerName")


@dataclass(frozen=True, slots=True)
class LauncherPodSettings:
    image: str
    """The qat-handler image (``--launcher-image``)."""
    run_dir: str = "/run/qat-handler"
    """The agent's ``--run-dir`` on the node; the pod mounts its own slot of ``<run_dir>/pods``."""


def render_launcher_pod(manifest: Mapping[str, Any], settings: LauncherPodSettings) -> dict[str, Any]:
    """The pod for a VMI manifest; raises Refused (naming the field) when the VMI cannot run."""
    vmi = parse_vmi(manifest)
    disk_init, disk_containers, disk_volumes = disk_pod_parts(vmi, settings.image)
    spec: dict[str, Any] = {}
    vmi_spec = manifest.get("spec") or {}
    for name in SCHEDULING_FIELDS:
        if vmi_spec.get(name):
            spec[name] = copy.deepcopy(vmi_spec[name])
    spec.update(
        {
            "terminationGracePeriodSeconds": pod_grace(vmi.grace_seconds),
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": LAUNCHER_UID,
                "runAsGroup": LAUNCHER_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [_container(vmi, settings), *disk_containers],
            "volumes": [
                {"name": "handoff", "hostPath": {"path": f"{settings.run_dir}/pods", "type": "Directory"}},
                *disk_volumes,
            ],
        }
    )
    if disk_init:
        spec["initContainers"] = disk_init
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(vmi, str(manifest.get("apiVersion"))),
        "spec": spec,
    }


def _metadata(vmi: VMI, api_version: str) -> dict[str, Any]:
    return {
        "generateName": f"virt-launcher-{vmi.name}-",
        "namespace": vmi.namespace,
        "labels": {APP_LABEL: APP_VALUE, CREATED_BY_LABEL: vmi.uid, ID_LABEL: vmi.name},
        "annotations": {DOMAIN_ANNOTATION: vmi.name},
        "ownerReferences": [
            {
                "apiVersion": api_version,
                "kind": "VirtualMachineInstance",
                "name": vmi.name,
                "uid": vmi.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def _container(vmi: VMI, settings: LauncherPodSettings) -> dict[str, Any]:
    resources = pod_resources(vmi)
    return {
        "name": "launcher",
        "image": settings.image,
        "command": ["qat-handler", "launcher"],
        "args": ["--log-format=json"],
        "env": [
            _field_env("POD_UID", "metadata.uid"),
            _field_env("VMI_NAMESPACE", "metadata.namespace"),
            _field_env("VMI_NAME", f"metadata.annotations['{DOMAIN_ANNOTATION}']"),
            _field_env("VMI_UID", f"metadata.labels['{CREATED_BY_LABEL}']"),
            {"name": "VMI_GRACE_SECONDS", "value": str(vmi.grace_seconds)},
            {"name": "QAT_HANDLER_SLOT", "value": SLOT_MOUNT},
        ],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": {
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "handoff", "mountPath": SLOT_MOUNT, "subPathExpr": "$(POD_UID)"}],
    }


def pod_resources(vmi: VMI) -> dict[str, str]:
    """requests = limits: the guest's size plus overhead, and one unit per device entry, summed per name."""
    out = {
        "cpu": cpu_quantity(vmi.cores * 1000 + CPU_OVERHEAD_MILLIS),
        "memory": memory_quantity(vmi.memory_bytes + MEMORY_OVERHEAD_BYTES),
    }
    for resource, count in Counter(request.resource for request in vmi.devices).items():
        out[resource] = str(count)
    return out


def cpu_quantity(millis: int) -> str:
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def memory_quantity(size: int) -> str:
    for suffix, unit in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
