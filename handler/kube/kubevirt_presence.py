"""Is KubeVirt running in this cluster? Read its virt-controller Deployment and its KubeVirt CRs."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from handler.core.coexistence import VIRT_CONTROLLER, kubevirt_conflict
from handler.core.refusal import Refusal
from handler.kube.client import GROUP, VERSION, raw


def kubevirt_refusal(api: client.ApiClient, kubevirt_namespace: str, who: str) -> Refusal | None:
    """A refusal naming the running KubeVirt, or None. Raises ApiException when the API cannot say."""
    try:
        deployment: dict[str, Any] | None = raw(
            client.AppsV1Api(api).read_namespaced_deployment(
                VIRT_CONTROLLER, kubevirt_namespace, _preload_content=False
            )
        )
    except ApiException as error:
        if error.status != 404:
            raise
        deployment = None
    try:
        listing = raw(
            client.CustomObjectsApi(api).list_namespaced_custom_object(
                GROUP, VERSION, kubevirt_namespace, "kubevirts", _preload_content=False
            )
        )
    except ApiException as error:
        if error.status != 404:
            raise
        listing = {}
    return kubevirt_conflict(who, kubevirt_namespace, deployment, listing.get("items") or [])


def presence_error(error: ApiException, namespace: str) -> str:
    """One line for an API error while looking for KubeVirt."""
    return (
        f"checking for KubeVirt in namespace {namespace}: API error {error.status} {error.reason}; "
        "fix: grant get on deployments/virt-controller and list on kubevirts there (deploy/rbac-*.yaml)"
    )
