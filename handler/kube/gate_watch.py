"""The feature gates: ConfigMap kubevirt-config (the seed's way) and the KubeVirt CR, listed and
watched in the KubeVirt namespace. The agent and the webhook read them through this one class,
so turning the QAT gate on takes effect in both without a restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Unpack

from kubernetes import client

from handler.core.feature_gates import CONFIGMAP_NAME, gates_from_configmap, gates_from_kubevirt_cr
from handler.kube.informer import DEFAULT_WATCH, ListOptions, Obj, WatchSettings
from handler.kube.informer_group import InformerGroup


class GateWatch(InformerGroup):
    def __init__(
        self,
        api: client.ApiClient,
        kubevirt_namespace: str = "kubevirt",
        settings: WatchSettings = DEFAULT_WATCH,
        on_change: Callable[[str, Obj], None] = lambda _kind, _obj: None,
        on_restart: Callable[[str], None] = lambda _name: None,
    ) -> None:
        super().__init__(settings, on_restart)
        custom = client.CustomObjectsApi(api)
        core = client.CoreV1Api(api)

        def configmaps(**options: Unpack[ListOptions]) -> object:
            return core.list_namespaced_config_map(kubevirt_namespace, **options)

        def kubevirts(**options: Unpack[ListOptions]) -> object:
            return custom.list_namespaced_custom_object("kubevirt.io", "v1", kubevirt_namespace, "kubevirts", **options)

        # Selected by name: the RBAC then grants this one ConfigMap (resourceNames), no other.
        self.configmaps = self.add(
            "kubevirt-config",
            configmaps,
            on_change,
            field_selector=f"metadata.name={CONFIGMAP_NAME}",
        )
        # Clusters without KubeVirt's operator serve no KubeVirt CR; the ConfigMap alone then decides.
        self.kubevirts = self.add("kubevirt-cr", kubevirts, on_change, optional=True)

    def enabled(self) -> frozenset[str]:
        gates: set[str] = set()
        for configmap in self.configmaps.items():
            gates |= gates_from_configmap(configmap)
        for kubevirt in self.kubevirts.items():
            gates |= gates_from_kubevirt_cr(kubevirt)
        return frozenset(gates)
