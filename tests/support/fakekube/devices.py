"""A node's device plugins, as kubelet's device manager sees them: which device IDs each
extended resource has, which pod holds which, and the environment a container gets.

Allocation takes free devices in a fixed order (lowest first). The environment follows the
plugins: for ``qat.intel.com/*`` the Intel QAT plugin's ``QAT0..QATk-1`` (one BDF each),
for any other resource KubeVirt's ``PCI_RESOURCE_<NAME>`` (comma-separated BDFs).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from handler.kube.pod_resources import ContainerDevices, ContainerResources, PodResources

QAT_PREFIX = "qat.intel.com/"


class AllocationFailed(Exception):
    pass


def device_env(resource: str, devices: Iterable[str]) -> dict[str, str]:
    ids = list(devices)
    if resource.startswith(QAT_PREFIX):
        return {f"QAT{i}": bdf for i, bdf in enumerate(ids)}
    name = "PCI_RESOURCE_" + resource.upper().replace("/", "_").replace(".", "_")
    return {name: ",".join(ids)}


class NodeDevices:
    def __init__(self, resources: Mapping[str, Iterable[str]]) -> None:
        self.resources = {name: tuple(ids) for name, ids in resources.items()}
        self._lock = threading.Lock()
        self._holder: dict[str, tuple[str, str]] = {}  # device id -> (pod uid, container name)
        self._pods: dict[str, tuple[str, str]] = {}  # pod uid -> (namespace, name)

    def allocatable(self) -> dict[str, str]:
        return {name: str(len(ids)) for name, ids in self.resources.items()}

    def free(self, resource: str) -> tuple[str, ...]:
        with self._lock:
            return tuple(d for d in self.resources.get(resource, ()) if d not in self._holder)

    def held_by(self, pod_uid: str) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(d for d, (uid, _) in self._holder.items() if uid == pod_uid))

    def allocate(self, pod: tuple[str, str, str], container: str, wanted: Mapping[str, int]) -> dict[str, list[str]]:
        """Devices for one container of pod (namespace, name, uid): all of them or none."""
        namespace, name, uid = pod
        with self._lock:
            chosen: dict[str, list[str]] = {}
            for resource, count in sorted(wanted.items()):
                free = [d for d in self.resources.get(resource, ()) if d not in self._holder]
                if count > len(free):
                    raise AllocationFailed(
                        f"Allocate failed due to requested number of devices unavailable for {resource}. "
                        f"Requested: {count}, Available: {len(free)}, which is unexpected"
                    )
                chosen[resource] = free[:count]
            for ids in chosen.values():
                for device in ids:
                    self._holder[device] = (uid, container)
            self._pods[uid] = (namespace, name)
            return chosen

    def release(self, pod_uid: str) -> None:
        with self._lock:
            self._holder = {d: holder for d, holder in self._holder.items() if holder[0] != pod_uid}
            self._pods.pop(pod_uid, None)

    def pod_resources(self) -> list[PodResources]:
        """What kubelet's pod-resources API answers for the pods holding devices now."""
        with self._lock:
            out = []
            for uid, (namespace, name) in sorted(self._pods.items()):
                containers: dict[str, dict[str, list[str]]] = {}
                for device, (holder, container) in sorted(self._holder.items()):
                    if holder == uid:
                        resource = next(r for r, ids in self.resources.items() if device in ids)
                        containers.setdefault(container, {}).setdefault(resource, []).append(device)
                entries = tuple(
                    ContainerResources(c, tuple(ContainerDevices(r, tuple(ids)) for r, ids in sorted(res.items())))
                    for c, res in sorted(containers.items())
                )
                out.append(PodResources(namespace, name, entries))
            return out
