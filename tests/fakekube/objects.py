"""Objects for the fake cluster tests, created through the official client, and a poll helper."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests.support.fakekube.cluster import QAT_GENERIC

REPO = Path(__file__).resolve().parents[2]
LAUNCHER_EXAMPLE = REPO / "deploy" / "examples" / "launcher-pod.yaml"
VMIS = ("kubevirt.io", "v1", "virtualmachineinstances")


def sleeper_pod(name: str, qats: int = 1, **spec: Any) -> dict[str, Any]:
    """A pod whose one container sleeps, asking for ``qats`` VFs."""
    resources = {"requests": {QAT_GENERIC: str(qats)}, "limits": {QAT_GENERIC: str(qats)}} if qats else {}
    container = {"name": "main", "image": "busybox", "command": ["sleep", "600"], "resources": resources}
    return {"metadata": {"name": name}, "spec": {"containers": [container], "restartPolicy": "Never", **spec}}


def create_pod(api: Any, body: dict[str, Any], namespace: str = "default") -> Any:
    return client.CoreV1Api(api).create_namespaced_pod(namespace, body)


def get_pod(api: Any, name: str, namespace: str = "default") -> Any:
    try:
        return client.CoreV1Api(api).read_namespaced_pod(name, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def condition(pod: Any, kind: str) -> Any:
    return next((c for c in pod.status.conditions or [] if c.type == kind), None) if pod is not None else None


def vmi_manifest(name: str, device: str = "qat0", namespace: str = "default") -> str:
    """A VMI asking for one generic QAT VF, as the YAML a user gives ``kubectl apply``."""
    return f"""apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: {name}
  namespace: {namespace}
spec:
  terminationGracePeriodSeconds: 5
  domain:
    cpu:
      cores: 1
    memory:
      guest: 256Mi
    devices:
      qats:
        - name: {device}
          deviceName: {QAT_GENERIC}
"""


def create_vmi(api: Any, name: str, grace: int = 30, namespace: str = "default") -> dict[str, Any]:
    body = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "terminationGracePeriodSeconds": grace,
            "domain": {"devices": {"qats": [{"name": "qat1", "deviceName": QAT_GENERIC}]}},
        },
    }
    created: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        *VMIS[:2], namespace, VMIS[2], body
    )
    return created


def launcher_pod(vmi: dict[str, Any], pod_grace: int | None = None, vmi_grace: int | None = None) -> dict[str, Any]:
    """deploy/examples/launcher-pod.yaml made for ``vmi``: owned by it, labelled with its uid."""
    pod: dict[str, Any] = copy.deepcopy(yaml.safe_load(LAUNCHER_EXAMPLE.read_text()))
    meta = vmi["metadata"]
    pod["metadata"] = {
        "name": f"virt-launcher-{meta['name']}-{uuid.uuid4().hex[:5]}",
        "namespace": meta["namespace"],
        "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": meta["uid"]},
        "annotations": {"kubevirt.io/domain": meta["name"]},
        "ownerReferences": [
            {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineInstance",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    spec = pod["spec"]
    for container in spec["containers"]:  # the client's models take quantities as strings only
        for kind, amounts in (container.get("resources") or {}).items():
            container["resources"][kind] = {name: str(value) for name, value in amounts.items()}
    if pod_grace is not None:
        spec["terminationGracePeriodSeconds"] = pod_grace
    if vmi_grace is not None:
        for container in spec["containers"]:
            for entry in container.get("env") or []:
                if entry["name"] == "VMI_GRACE_SECONDS":
                    entry["value"] = str(vmi_grace)
    return pod
