"""The feature gates the webhook sees: ConfigMap kubevirt-config and the KubeVirt CR, watched
the way the agent watches them, so turning the QAT gate on takes effect without a restart."""

from __future__ import annotations

from typing import Unpack

from kubernetes import client

from handler.core.feature_gates import CONFIGMAP_NAME, gates_from_configmap, gates_from_kubevirt_cr
from handler.kube.informer import DEFAULT_WATCH, Informer, ListOptions, Obj, WatchSettings


class GateWatch:
    def __init__(
        self, api: client.ApiClient, kubevirt_namespace: str = "kubevirt", settings: WatchSettings = DEFAULT_WATCH
    ) -> None:
        custom = client.CustomObjectsApi(api)
        core = client.CoreV1Api(api)

        def configmaps(**options: Unpack[ListOptions]) -> object:
            return core.list_namespaced_config_map(kubevirt_namespace, **options)

        def kubevirts(**options: Unpack[ListOptions]) -> object:
            return custom.list_namespaced_custom_object("kubevirt.io", "v1", kubevirt_namespace, "kubevirts", **options)

        self.configmaps = Informer(
            "kubevirt-config", configmaps, _ignore, field_selector=f"metadata.name={CONFIGMAP_NAME}", settings=settings
        )
        # A cluster without KubeVirt's operator serves no KubeVirt CR: the ConfigMap alone decides.
        self.kubevirts = Informer("kubevirt-cr", kubevirts, _ignore, optional=True, settings=settings)

    def start(self) -> None:
        self.configmaps.start()
        self.kubevirts.start()

    def stop(self) -> None:
        self.configmaps.stop()
        self.kubevirts.stop()

    def wait_synced(self, timeout: float) -> bool:
        return self.configmaps.synced.wait(timeout) and self.kubevirts.synced.wait(timeout)

    def enabled(self) -> frozenset[str]:
        gates: set[str] = set()
        for configmap in self.configmaps.items():
            gates |= gates_from_configmap(configmap)
        for kubevirt in self.kubevirts.items():
            gates |= gates_from_kubevirt_cr(kubevirt)
        return frozenset(gates)


def _ignore(_kind: str, _obj: Obj) -> None:
    """Each review reads the caches afresh; nothing to fan out."""
