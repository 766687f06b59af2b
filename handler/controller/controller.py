"""The controller: watches every VMI and every launcher pod, and while it leads, makes each
VMI's pod and moves its phase (``handler.core.vmi_lifecycle`` decides; this executes).

Never two pods for one VMI: pods are found by their ``kubevirt.io/created-by`` label, a pod
this process asked for counts until the pod cache has shown it, and a new leader lists the
pods afresh before it acts. Each VMI is one key of a work queue, so one VMI is never handled
by two workers at once, and one that fails is retried with backoff while the others go on.
What it does is counted in ``ControllerMetrics``; ``pulse`` and ``threads_down`` feed /healthz.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from handler.agent.keyed_queue import KeyedQueue
from handler.agent.worker_pulse import WorkerPulse
from handler.core.launcher_pod import APP_LABEL, APP_VALUE, CREATED_BY_LABEL, ID_LABEL, LauncherPodSettings
from handler.core.vmi_lifecycle import (
    PENDING,
    CreatePod,
    DeletePod,
    SetStatus,
    Step,
    VMICondition,
    decide,
    status_patch,
)
from handler.kube.client import GROUP, PLURAL, VERSION, raw
from handler.kube.event_recorder import EventRecorder
from handler.kube.informer import DEFAULT_WATCH, Obj, WatchSettings, object_key
from handler.kube.informer_group import InformerGroup
from handler.kube.list_calls import all_pods, cluster_vmis
from handler.kube.timestamps import now_iso
from handler.ops.controller_metrics import ControllerMetrics

log = structlog.get_logger("qat_handler.controller")

LAUNCHER_SELECTOR = f"{APP_LABEL}={APP_VALUE}"
COMPONENT = "qat-handler-controller"
API_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError)


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    pod: LauncherPodSettings
    workers: int = 4
    resync_seconds: float = 60.0
    """Look at every VMI at least this often while leading."""
    retry_initial: float = 0.5
    retry_max: float = 30.0


class Controller:
    def __init__(
        self,
        api: client.ApiClient,
        settings: ControllerSettings,
        watch_settings: WatchSettings = DEFAULT_WATCH,
        clock: Callable[[], float] = time.monotonic,
        metrics: ControllerMetrics | None = None,
        identity: str = COMPONENT,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or ControllerMetrics()
        self.pulse = WorkerPulse(clock)
        """Which worker is busy with one VMI since when: /healthz fails on one stuck in a call."""
        self._events = EventRecorder(api, identity, component=COMPONENT)
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._lock = threading.Lock()
        self._pods: dict[str, dict[str, Obj]] = {}
        """VMI uid -> pod key -> pod, from the pod cache (and a new leader's fresh list)."""
        self._asked: dict[str, str] = {}
        """VMI uid -> the pod created for it, until the pod cache shows a pod for that uid."""
        self._uids: dict[str, str] = {}
        self._failures: dict[str, int] = {}
        self._leading = threading.Event()
        self._stop = threading.Event()
        self.queue = KeyedQueue(clock)
        self.metrics.track_queue(self.queue.pending)

        self.watches = InformerGroup(watch_settings)
        self.vmis = self.watches.add("vmis", cluster_vmis(self._custom), self._vmi_changed)
        self._list_pods: Callable[..., object] = all_pods(self._core)
        self.pods = self.watches.add(
            "launcher-pods", self._list_pods, self._pod_changed, label_selector=LAUNCHER_SELECTOR
        )
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Fill the caches; act only after ``lead()``."""
        self.watches.start()
        for index in range(max(1, self.settings.workers)):
            name = f"controller-{index}"
            self.pulse.register(name)
            thread = threading.Thread(target=self._work, args=(name,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait_synced(self, timeout: float) -> bool:
        return self.watches.wait_synced(timeout)

    def threads_down(self) -> list[str]:
        """Workers and informers whose thread has ended while the controller runs (a bug: /healthz fails)."""
        if self._stop.is_set() or not self._threads:
            return []  # not started yet, or stopping
        down = [t.name for t in self._threads if not t.is_alive()]
        return down + [f"informer-{i.name}" for i in (self.vmis, self.pods) if not i.running]

    def lead(self) -> None:
        """Called on winning the lease: list pods afresh (the last leader may have made some the cache
        has not shown yet), then look at every VMI."""
        while not self.wait_synced(5.0) and not self._stop.is_set():
            log.warning("still waiting for the first lists before acting")
        self._index_fresh_pods()
        self._leading.set()
        for key in self.vmis.keys():
            self.queue.add(key)
        log.info("acting as the leader", vmis=len(self.vmis.keys()))

    def stop(self) -> None:
        self._leading.clear()
        self._stop.set()
        self.queue.close()
        self.watches.stop()
        for thread in self._threads:
            thread.join(timeout=5)

    def resync(self) -> None:
        if self._leading.is_set():
            for key in self.vmis.keys():
                self.queue.add(key)

    def wait_idle(self, timeout: float) -> bool:
        return self.queue.wait_idle(timeout)

    # -- cache fan-out ----------------------------------------------------------------------
    def _vmi_changed(self, kind: str, obj: Obj) -> None:
        key, uid = object_key(obj), str((obj.get("metadata") or {}).get("uid") or "")
        with self._lock:
            if kind == "DELETED":
                self._uids.pop(key, None)
            else:
                self._uids[key] = uid
        self.queue.add(key)

    def _pod_changed(self, kind: str, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        uid = str((meta.get("labels") or {}).get(CREATED_BY_LABEL) or "")
        if not uid:
            return
        with self._lock:
            self._asked.pop(uid, None)
            pods = self._pods.setdefault(uid, {})
            if kind == "DELETED":
                pods.pop(object_key(obj), None)
            else:
                pods[object_key(obj)] = obj
            if not pods:
                self._pods.pop(uid, None)
        name = (meta.get("labels") or {}).get(ID_LABEL) or (meta.get("annotations") or {}).get("kubevirt.io/domain")
        if name:
            self.queue.add(f"{meta.get('namespace')}/{name}")

    def _index_fresh_pods(self) -> None:
        with self._calling("list_pods"):
            listing = raw(self._list_pods(label_selector=LAUNCHER_SELECTOR, _preload_content=False))
        for pod in listing.get("items") or []:
            self._pod_changed("ADDED", pod)

    # -- the work loop ----------------------------------------------------------------------
    def _work(self, name: str) -> None:
        while not self._stop.is_set():
            key = self.queue.get(timeout=0.5)
            if key is None:
                continue
            self.pulse.working(name)
            try:
                if self._leading.is_set():
                    self._reconcile(key)
                    self._failures.pop(key, None)
            except (*API_ERRORS, ValueError) as error:
                failures = self._failures[key] = self._failures.get(key, 0) + 1
                delay = min(self.settings.retry_initial * 2 ** (failures - 1), self.settings.retry_max)
                log.warning("reconcile failed; retrying", vmi=key, error=str(error)[:300], retry_in=delay)
                self.queue.add(key, delay)
            finally:
                self.pulse.waiting(name)
                self.queue.done(key)

    def _reconcile(self, key: str) -> None:
        vmi = self.vmis.get(key)
        if vmi is None:
            self._clean_up_after(key)
            return
        uid = str((vmi.get("metadata") or {}).get("uid") or "")
        with self._lock:
            pods = list(self._pods.get(uid, {}).values())
            asked = uid in self._asked
        if len(pods) > 1:
            log.error("more than one launcher pod for a VMI", vmi=key, pods=[object_key(p) for p in pods])
        for step in decide(vmi, pods, asked, self.settings.pod):
            self._execute(key, uid, vmi, step)

    def _clean_up_after(self, key: str) -> None:
        """A VMI that is gone takes its pods with it (ownerReference GC does the same in a cluster)."""
        with self._lock:
            gone = [uid for uid, pods in self._pods.items() if any(_vmi_key(p) == key for p in pods.values())]
            live = set(self._uids.values())
            pods = [p for uid in gone if uid not in live for p in self._pods.get(uid, {}).values()]
        for pod in pods:
            meta = pod["metadata"]
            self._execute(key, "", None, DeletePod(meta["namespace"], meta["name"]))

    def _execute(self, key: str, uid: str, vmi: Obj | None, step: Step) -> None:
        namespace, name = key.split("/", 1)
        if isinstance(step, CreatePod):
            body: Any = step.pod  # the client builds its V1Pod model from this camelCase dict
            try:
                with self._calling("create_pod"):
                    created = raw(self._core.create_namespaced_pod(namespace, body, _preload_content=False))
            except ApiException as error:
                if vmi is not None and error.status is not None and 400 <= error.status < 500:
                    self._set_status(namespace, name, vmi, failed_create(error))
                raise
            with self._lock:
                if uid not in self._pods:
                    self._asked[uid] = str(created["metadata"]["name"])
            self.metrics.count_pod("created")
            log.info("launcher pod created", vmi=key, uid=uid, pod=created["metadata"]["name"])
        elif isinstance(step, DeletePod):
            try:
                with self._calling("delete_pod"):
                    self._core.delete_namespaced_pod(step.name, step.namespace)
                self.metrics.count_pod("deleted")
                log.info("launcher pod deleted", vmi=key, pod=step.name)
            except ApiException as error:
                if error.status != 404:
                    raise
        elif vmi is not None:
            self._set_status(namespace, name, vmi, step)

    def _set_status(self, namespace: str, name: str, vmi: Obj, step: SetStatus) -> None:
        version = str(vmi["metadata"].get("resourceVersion") or "")
        try:
            self._custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, status_patch(step, version, now_iso())
            )
        except ApiException as error:
            if error.status == 409:
                log.debug("VMI changed meanwhile; looking again", vmi=f"{namespace}/{name}")
                return  # the watch brings the newer VMI, which queues it again
            if error.status != 404:
                self.metrics.count_api_error("patch_vmi")
                raise
            return
        except API_ERRORS:
            self.metrics.count_api_error("patch_vmi")
            raise
        if (vmi.get("status") or {}).get("phase") != step.phase:
            self.metrics.count_phase(step.phase)
        log.info("VMI phase set", vmi=f"{namespace}/{name}", phase=step.phase, reason=step.reason or None)
        if step.warn and step.condition is not None:
            self._events.record(dict(vmi), step.reason, step.condition.message, warning=True)

    @contextmanager
    def _calling(self, call: str) -> Iterator[None]:
        """Count an API call that fails for the metrics, then let the error go on (404/409 count too)."""
        try:
            yield
        except API_ERRORS:
            self.metrics.count_api_error(call)
            raise


def failed_create(error: ApiException) -> SetStatus:
    """Pending, with the API server's refusal of the pod as the reason (the controller retries)."""
    try:
        detail = str(json.loads(error.body or "{}").get("message") or error.reason)
    except ValueError:
        detail = str(error.reason)
    message = (
        f"launcher pod could not be created ({error.status}: {detail}); "
        "fix: see the message (quota, admission, RBAC); the controller retries with backoff"
    )
    return SetStatus(PENDING, condition=VMICondition("Synchronized", "False", "FailedCreate", message))


def _vmi_key(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{(meta.get('labels') or {}).get(ID_LABEL)}"
