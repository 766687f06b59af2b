"""The coexistence rule at start-up: the agent and the controller refuse to run beside KubeVirt,
whose own controllers would act on the same VMIs. Only those two entry points import this."""

from __future__ import annotations

from typing import Any


def refuse_beside_kubevirt(api: Any, namespace: str, who: str) -> str | None:
    """One line when KubeVirt runs in the cluster (or the API cannot say), else None."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    from handler.kube.kubevirt_presence import kubevirt_refusal, presence_error

    try:
        refusal = kubevirt_refusal(api, namespace, who)
    except ApiException as error:
        return presence_error(error, namespace)
    except (OSError, urllib3.exceptions.HTTPError) as error:
        return f"checking for KubeVirt: cannot reach the API server ({error}); fix: check KUBECONFIG or the network"
    return refusal.line() if refusal is not None else None
