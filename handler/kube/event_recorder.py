"""Events on VMIs through core/v1 Events, aggregated like kubectl expects: a repeat of the
same reason and message bumps ``count`` instead of creating another Event."""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from handler.kube.client import TRANSPORT_ERRORS
from handler.kube.timestamps import now_iso

log = structlog.get_logger("qat_handler.events")

COMPONENT = "qat-handler"
MESSAGE_LIMIT = 1024


class EventRecorder:
    def __init__(self, api: client.ApiClient, node_name: str, component: str = COMPONENT) -> None:
        self._core = client.CoreV1Api(api)
        self._node = node_name
        self._component = component
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str, str], tuple[str, int]] = {}

    def record(self, vmi: dict[str, Any], reason: str, message: str, warning: bool) -> None:
        meta = vmi.get("metadata") or {}
        namespace, uid = meta.get("namespace", "default"), str(meta.get("uid", ""))
        message = message[:MESSAGE_LIMIT]
        stamp = now_iso()
        with self._lock:
            seen = self._seen.get((uid, reason, message))
        try:
            if seen is not None:
                name, count = seen
                self._core.patch_namespaced_event(name, namespace, {"count": count + 1, "lastTimestamp": stamp})
                with self._lock:
                    self._seen[(uid, reason, message)] = (name, count + 1)
                return
            # Named as client-go names Events: the API server lists by name, and kubectl describe
            # keeps that order among Events of the same second, so the story reads in order.
            name = f"{meta.get('name', 'vmi')}.{time.time_ns():x}"
            # The client annotates the body as a CoreV1Event model, but its validate_call builds
            # that model from this camelCase dict, so the dict goes through as Any.
            body: Any = {
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {
                    "apiVersion": "kubevirt.io/v1",
                    "kind": "VirtualMachineInstance",
                    "name": meta.get("name"),
                    "namespace": namespace,
                    "uid": uid,
                    "resourceVersion": meta.get("resourceVersion"),
                },
                "reason": reason,
                "message": message,
                "type": "Warning" if warning else "Normal",
                "source": {"component": self._component, "host": self._node},
                "reportingComponent": self._component,
                "reportingInstance": self._node,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            }
            self._core.create_namespaced_event(namespace, body)
            with self._lock:
                self._seen[(uid, reason, message)] = (name, 1)
        except (ApiException, ValueError, *TRANSPORT_ERRORS) as error:
            # An Event is best effort: the status condition and the log line carry the same news.
            log.warning(
                "event not recorded",
                vmi=f"{namespace}/{meta.get('name')}",
                reason=reason,
                error=f"{error.status} {error.reason}" if isinstance(error, ApiException) else str(error),
            )
