"""The API client: in-cluster config in a pod, else KUBECONFIG; plus the discovery we need."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

GROUP, VERSION, PLURAL = "kubevirt.io", "v1", "virtualmachineinstances"
TRANSPORT_ERRORS = (HTTPError, OSError)
"""A request that got no HTTP answer (connection refused or reset, timeout) raises these, not
ApiException; callers treat them as a failed call like any other."""


class KubeConfigError(Exception):
    pass


def api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except ConfigException:
        try:
            config.load_kube_config()
        except (ConfigException, OSError) as error:
            raise KubeConfigError(
                f"no Kubernetes credentials ({error}); fix: run in a pod with a service account, or set KUBECONFIG"
            ) from None
    return client.ApiClient()


def serves_vmi_status(api: client.ApiClient) -> bool:
    """True when ``virtualmachineinstances/status`` is a served subresource (KubeVirt's own CRD: no)."""
    try:
        document = raw(client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION, _preload_content=False))
    except ApiException:
        return False
    return any(r.get("name") == f"{PLURAL}/status" for r in document.get("resources", []))


def raw(response: Any) -> dict[str, Any]:
    """A ``_preload_content=False`` response as a dict."""
    data: dict[str, Any] = json.loads(response.data)
    return data
