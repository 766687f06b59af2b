"""Kubernetes: a VMI's multus networks become host bridges, read from their
NetworkAttachmentDefinitions; the pod network is refused (see handler.core.nad)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from handler.core.attachments import Attachment
from handler.core.nad import bridge_attachment, missing_bridge_refusal, nad_reference, pod_network_refusal
from handler.core.vmi import VMI
from handler.kube.status_sink import KubeApiError

NAD_GROUP, NAD_VERSION, NAD_PLURAL = "k8s.cni.cncf.io", "v1", "network-attachment-definitions"


class KubeNetworks:
    def __init__(self, api: client.ApiClient, is_bridge: Callable[[str], bool]) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._is_bridge = is_bridge
        """Whether the node has a bridge of that name (the host's sysfs under --host-root)."""

    def attachments(self, vmi: VMI) -> tuple[Attachment, ...]:
        found = []
        for interface in vmi.interfaces:
            if interface.network.kind == "pod":
                raise pod_network_refusal(interface)
            namespace, name = nad_reference(interface, vmi.namespace)
            where = f"{namespace}/{name}"
            attachment = bridge_attachment(interface, self._get(namespace, name), where)
            if not self._is_bridge(attachment.source):
                raise missing_bridge_refusal(interface, attachment, where)
            found.append(attachment)
        return tuple(found)

    def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            # Annotated as object: a custom object is served as its decoded JSON, a dict.
            nad = cast(
                "dict[str, Any]",
                self._custom.get_namespaced_custom_object(NAD_GROUP, NAD_VERSION, namespace, NAD_PLURAL, name),
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise KubeApiError(
                f"get NetworkAttachmentDefinition {namespace}/{name}: {error.status} {error.reason}"
            ) from None
        return nad
