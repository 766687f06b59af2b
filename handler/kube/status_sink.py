"""Writing VMI status back to the API server, the way virt-handler does.

KubeVirt's VMI CRD serves no status subresource, so by default status goes through the
main resource as a merge patch that names only ``status`` and our annotations; nothing
else of the object is ever sent back, so a concurrent spec change cannot be clobbered.
Where discovery shows ``virtualmachineinstances/status``, status goes there instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from handler.core.actions import RecordEvent
from handler.core.kube_status import FINALIZER, status_annotations, status_body, status_from_object
from handler.core.port_error import PortError
from handler.core.status import VMIStatus
from handler.core.vmi import NODE_LABEL
from handler.core.vmi_parse import API_VERSIONS
from handler.kube.client import GROUP, PLURAL, TRANSPORT_ERRORS, VERSION
from handler.kube.event_recorder import EventRecorder
from handler.kube.informer import Informer
from handler.kube.object_meta import resource_version, uid_of
from handler.kube.own_writes import OwnWrites
from handler.kube.timestamps import now_iso

log = structlog.get_logger("qat_handler.status")

ATTEMPTS = 5


class KubeStatusSink:
    def __init__(
        self,
        api: client.ApiClient,
        vmis: Informer,
        node_name: str,
        status_subresource: bool,
        on_status: Callable[[str, VMIStatus], None] = lambda _key, _status: None,
        on_forget: Callable[[str], None] = lambda _key: None,
    ) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._vmis = vmis
        self._node = node_name
        self._status_subresource = status_subresource
        self._events = EventRecorder(api, node_name)
        self._on_status = on_status
        self._on_forget = on_forget
        """Called once a VMI's domain is gone and the agent is done with the key."""
        self._lock = threading.Lock()
        self._written: dict[str, tuple[str, VMIStatus]] = {}
        """Our last write per key (with the VMI uid): the watch may not have echoed it yet."""
        self._own = OwnWrites()

    # -- the StatusSink port --------------------------------------------------------------
    def last_status(self, key: str) -> VMIStatus | None:
        obj = self._vmis.get(key)
        with self._lock:
            written = self._written.get(key)
        if written is not None and written[0] == uid_of(obj):
            return written[1]
        return status_from_object(obj) if obj is not None else None

    def write(self, key: str, status: VMIStatus) -> None:
        obj = self._own.freshest(key, self._vmis.get(key))
        if obj is None:
            return
        namespace, name = key.split("/", 1)
        api_version = version_of(obj)
        written = self._patch_status(key, status, obj, api_version)
        if self._status_subresource and written is not None:  # after the status: its guard is the version we read
            annotations = {"metadata": {"annotations": status_annotations(status)}}
            result = self._patch(namespace, name, annotations, status_only=False, version=api_version)
            self._own.wrote(key, resource_version(written), result)
        with self._lock:
            self._written[key] = (uid_of(obj), status)
        self._on_status(key, status)

    def record_event(self, key: str, event: RecordEvent) -> None:
        obj = self._vmis.get(key)
        if obj is not None:
            self._events.record(obj, event.reason, event.message, event.warning)

    def claim(self, key: str) -> None:
        self._edit_finalizers(key, add=True)

    def forget(self, key: str) -> None:
        self._edit_finalizers(key, add=False)
        self._own.forget(key)
        with self._lock:
            self._written.pop(key, None)
        self._on_forget(key)

    # -- API calls ------------------------------------------------------------------------
    def _patch_status(
        self, key: str, status: VMIStatus, obj: dict[str, Any], api_version: str
    ) -> dict[str, Any] | None:
        """Patch the status computed from the object as last seen, guarded by its resourceVersion;
        returns the VMI as the patch left it (None if the VMI is gone).

        The body merges into what the VMI carried (the controller's Failed, its conditions), so
        it is only valid for that version: on a conflict the VMI is read afresh and the body made
        again from it, never sent blind over a newer status.
        """
        namespace, name = key.split("/", 1)
        for attempt in range(1, ATTEMPTS + 1):
            body: dict[str, Any] = {"status": status_body(status, self._node, now_iso(), obj.get("status"))}
            if not self._status_subresource:
                body["metadata"] = {"annotations": status_annotations(status)}
            guard = resource_version(obj)
            if guard:
                body.setdefault("metadata", {})["resourceVersion"] = guard
            try:
                result = self._patch(
                    namespace, name, body, status_only=self._status_subresource, version=api_version, retry=False
                )
                self._own.wrote(key, guard, result)
                return result
            except _Conflict:
                if attempt == ATTEMPTS:
                    raise KubeApiError(f"patch {key}: 409 Conflict {ATTEMPTS} times; retried next pass") from None
                log.info("status patch conflicted; reading the VMI afresh", vmi=key, attempt=attempt)
                fresh = self._get(key)
                if fresh is None:
                    return None  # the VMI is gone; nothing left to report on
                obj = fresh
        return None  # not reached: the last attempt raises

    def _patch(
        self, namespace: str, name: str, body: dict[str, Any], status_only: bool, version: str, retry: bool = True
    ) -> dict[str, Any] | None:
        """The patched VMI as the server returned it; None if the VMI is gone."""
        call = (
            self._custom.patch_namespaced_custom_object_status
            if status_only
            else self._custom.patch_namespaced_custom_object
        )
        for attempt in range(1, ATTEMPTS + 1):
            try:
                result = call(GROUP, version, namespace, PLURAL, name, body)
                return result if isinstance(result, dict) else None
            except TRANSPORT_ERRORS as error:
                raise _transport_error(error, f"patch {namespace}/{name}") from None
            except ApiException as error:
                if error.status == 404:
                    return None  # the VMI is gone; nothing left to report on
                if error.status == 409 and not retry:
                    raise _Conflict() from None
                if error.status != 409 or attempt == ATTEMPTS:
                    raise _api_error(error, f"patch {namespace}/{name}") from None
                log.info("status patch conflicted; retrying", vmi=f"{namespace}/{name}", attempt=attempt)
                time.sleep(0.05 * attempt)
        return None  # not reached: the last attempt raises

    def _get(self, key: str) -> dict[str, Any] | None:
        namespace, name = key.split("/", 1)
        try:
            # Annotated as object: a custom object is served as its decoded JSON, a dict.
            return cast(
                "dict[str, Any]", self._custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            )
        except TRANSPORT_ERRORS as error:
            raise _transport_error(error, f"get {key}") from None
        except ApiException as error:
            if error.status == 404:
                return None
            raise _api_error(error, f"get {key}") from None

    def _edit_finalizers(self, key: str, add: bool) -> None:
        namespace, name = key.split("/", 1)
        for attempt in range(1, ATTEMPTS + 1):
            current = self._get(key)
            if current is None:
                return
            meta = current.get("metadata") or {}
            finalizers = list(meta.get("finalizers") or [])
            if (FINALIZER in finalizers) == add:
                return
            owner = (meta.get("labels") or {}).get(NODE_LABEL)
            if not add and owner and owner != self._node:
                # Moved to another node (the label changed by hand): every node's agent uses this
                # one finalizer, and that node's agent now holds the VMI's domain under it.
                log.info("finalizer kept for the VMI's new node", vmi=key, finalizer=FINALIZER, node=owner)
                return
            wanted = [*finalizers, FINALIZER] if add else [f for f in finalizers if f != FINALIZER]
            patch = {"metadata": {"finalizers": wanted, "resourceVersion": meta.get("resourceVersion")}}
            try:
                result = self._custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
                log.info("finalizer added" if add else "finalizer removed", vmi=key, finalizer=FINALIZER)
                self._own.wrote(key, resource_version(current), result)
                return
            except TRANSPORT_ERRORS as error:
                raise _transport_error(error, f"update finalizers of {key}") from None
            except ApiException as error:
                if error.status == 404:
                    return
                if error.status != 409 or attempt == ATTEMPTS:
                    raise _api_error(error, f"update finalizers of {key}") from None


class _Conflict(Exception):
    """A guarded patch met a newer resourceVersion."""


class KubeApiError(PortError):
    """An API call that failed for good; the reconciler reports it and retries later."""

    reason = "ApiError"


def _api_error(error: ApiException, what: str) -> KubeApiError:
    return KubeApiError(f"{what}: {error.status} {error.reason}")


def _transport_error(error: Exception, what: str) -> KubeApiError:
    return KubeApiError(f"{what}: no answer from the API server ({error.__class__.__name__})")


def version_of(obj: dict[str, Any]) -> str:
    """The API version the VMI was read in (v1, or its alias v1alpha3): status goes back in it."""
    group, _, version = str(obj.get("apiVersion") or "").partition("/")
    return version if group == GROUP and f"{group}/{version}" in API_VERSIONS else VERSION
