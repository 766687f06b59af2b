"""Secrets for cloud-init (``secretRef``, ``networkDataSecretRef``), read from the VMI's namespace.

The agent only ever ``get``s a Secret a VMI on its node names; it never lists or watches them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from handler.kube.client import raw


class KubeSecretReader:
    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)

    def read(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        try:
            secret = raw(self.core.read_namespaced_secret(name, namespace, _preload_content=False))
        except ApiException as error:
            if error.status == 404:
                return None
            raise OSError(f"API answered {error.status} {error.reason}") from None
        except Exception as error:  # connection errors come from urllib3 in many shapes
            raise OSError(str(error)) from None
        decoded: dict[str, bytes] = {}
        for key, value in (secret.get("data") or {}).items():
            try:
                decoded[key] = base64.b64decode(value)
            except (binascii.Error, ValueError, TypeError):
                continue
        return decoded
