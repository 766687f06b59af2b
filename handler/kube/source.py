"""What the cluster wants for each VMI on this node: the VMI from the API, its devices from
the launcher's handoff, and the QAT feature gate."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import structlog
from kubernetes import client

from handler.core.allocation_check import check_allocation
from handler.core.desired import Desired, Intent
from handler.core.device_env import AssignedDevice, resolve_devices
from handler.core.feature_gates import CONFIGMAP_NAME, gate_refusal
from handler.core.handoff import Handoff
from handler.core.kube_status import FINALIZER
from handler.core.launcher_failure import failed_by_controller
from handler.core.planner import WAITING_FOR_LAUNCHER
from handler.core.refusal import Refusal, Refused
from handler.core.vmi import NODE_LABEL, VMI
from handler.core.vmi_parse import parse_vmi
from handler.kube.gate_watch import GateWatch
from handler.kube.handoff_slots import HandoffSlots, Slot
from handler.kube.informer import DEFAULT_WATCH, Obj, WatchSettings
from handler.kube.informer_group import InformerGroup
from handler.kube.launcher_pods import CREATED_BY_LABEL, handoff_refusal, pod_with_uid, vouches_for
from handler.kube.list_calls import all_pods, cluster_vmis
from handler.kube.pod_resources import PodResourcesClient, PodResourcesUnavailable

log = structlog.get_logger("qat_handler.kube")

__all__ = ["CONFIGMAP_NAME", "KubeSource"]


class KubeSource:
    def __init__(
        self,
        api: client.ApiClient,
        node_name: str,
        slots: HandoffSlots,
        kubevirt_namespace: str = "kubevirt",
        watch_settings: WatchSettings = DEFAULT_WATCH,
        on_change: Callable[[str], None] = lambda _key: None,
        on_watch_restart: Callable[[str], None] = lambda _name: None,
        pod_resources: PodResourcesClient | None = None,
    ) -> None:
        self.node_name = node_name
        self.pod_resources = pod_resources
        """kubelet's record of which devices each pod got; None when its socket is not reachable."""
        self.slots = slots
        self.on_change = on_change
        self._uid_to_key: dict[str, str] = {}
        self._lock = threading.Lock()
        self.watches = InformerGroup(watch_settings, on_watch_restart)
        self.vmis = self.watches.add(
            "vmis",
            cluster_vmis(client.CustomObjectsApi(api)),
            self._vmi_changed,
            label_selector=f"{NODE_LABEL}={node_name}",
        )
        self.gates = GateWatch(api, kubevirt_namespace, watch_settings, self._gates_changed, on_watch_restart)
        self.watches.join(self.gates)
        self.configmaps, self.kubevirts = self.gates.configmaps, self.gates.kubevirts
        self.pods = self.watches.add(
            "pods",
            all_pods(client.CoreV1Api(api)),
            self._pod_changed,
            field_selector=f"spec.nodeName={node_name}",
            label_selector=CREATED_BY_LABEL,
        )

    def start(self) -> None:
        self.watches.start()

    def wait_synced(self, timeout: float) -> bool:
        return self.watches.wait_synced(timeout)

    def stop(self) -> None:
        self.watches.stop()

    # -- the DesiredSource port -----------------------------------------------------------
    def knows(self, key: str) -> bool:
        return self.vmis.get(key) is not None

    def keys(self) -> Iterable[str]:
        return self.vmis.keys()

    def desired(self, key: str) -> Desired | None:
        obj = self.vmis.get(key)
        if obj is None:
            return None
        try:
            vmi = parse_vmi(obj)
        except Refused as refused:
            return Desired(key, Intent.RUN, None, blocked=refused.refusal)
        if vmi.deletion_requested:
            return Desired(key, Intent.REMOVE, vmi)
        if failed_by_controller(obj.get("status")):
            # Its launcher pod is gone: let the guest go as if the VMI were deleted (stop it,
            # undefine it, drop the finalizer), but keep the VMI and its Failed status.
            holds = FINALIZER in ((obj.get("metadata") or {}).get("finalizers") or [])
            return Desired(key, Intent.REMOVE if holds else Intent.STOP, vmi)
        if any(request.field.startswith("spec.domain.devices.qats") for request in vmi.devices):
            refusal = gate_refusal(self.enabled_gates())
            if refusal is not None:
                return Desired(key, Intent.RUN, vmi, blocked=refusal)
        slot, refusal = self._launcher_slot(vmi)
        if slot is None or slot.handoff is None:
            return Desired(key, Intent.RUN, vmi, blocked=refusal)
        intent = Intent.STOP if slot.handoff.stop_requested else Intent.RUN
        try:
            devices = resolve_devices(vmi, slot.handoff.env_map())
        except Refused as refused:
            return Desired(key, intent, vmi, blocked=refused.refusal)
        refusal = self._allocation_refusal(slot.pod_uid, devices)
        return Desired(key, intent, vmi, devices, blocked=refusal)

    def _allocation_refusal(self, pod_uid: str, devices: tuple[AssignedDevice, ...]) -> Refusal | None:
        """Every handed-over BDF must be one kubelet allocated to that very pod for that resource."""
        if self.pod_resources is None or not devices:
            return None
        pod = pod_with_uid(self.pods.items(), pod_uid)
        meta = (pod or {}).get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        by_resource: dict[str, list[str]] = {}
        for device in devices:
            by_resource.setdefault(device.resource, []).append(str(device.bdf))
        try:
            allocated = self.pod_resources.allocations().resources_of(namespace, name)
        except PodResourcesUnavailable as error:
            # Fail closed: the check was on at start, so a guest is not started without it.
            return Refusal(
                "PodResourcesUnavailable",
                "kubelet pod-resources",
                f"cannot be read ({error})",
                "check kubelet and the pod-resources socket mount; the agent retries",
            )
        return check_allocation(by_resource, allocated, f"{namespace}/{name}")

    def enabled_gates(self) -> frozenset[str]:
        return self.gates.enabled()

    def launcher_slot(self, vmi_uid: str) -> Slot | None:
        """The verified slot of a VMI's launcher, for reporting back to it."""
        key = self._uid_to_key.get(vmi_uid)
        obj = self.vmis.get(key) if key else None
        if obj is None:
            return None
        try:
            slot, _ = self._launcher_slot(parse_vmi(obj))
        except Refused:
            return None
        return slot

    def _launcher_slot(self, vmi: VMI) -> tuple[Slot | None, Refusal]:
        refusal = Refusal(
            WAITING_FOR_LAUNCHER,
            "launcher handoff",
            "has not arrived from the VMI's pod yet",
            "check that the pod runs `qat-handler launcher` with the handoff volume mounted",
        )
        pods = self.pods.items()
        for slot in self.slots.for_vmi(vmi.uid):
            assert slot.handoff is not None
            pod = pod_with_uid(pods, slot.pod_uid)
            if pod is None and slot.handoff.pod_uid == slot.pod_uid and slot.handoff.vmi_uid == vmi.uid:
                # The slot of a launcher pod that is gone: kubelet leaves hostPath content behind.
                # It grants nothing; it is neither forged nor worth a warning.
                continue
            rejected = handoff_refusal(vmi, slot.pod_uid, slot.handoff, pod)
            if rejected is None:
                return slot, refusal
            log.warning(rejected.line(), vmi=vmi.key, uid=vmi.uid, pod_uid=slot.pod_uid, reason=rejected.reason)
            refusal = rejected
        return None, refusal

    # -- change fan-out ----------------------------------------------------------------------
    def _vmi_changed(self, kind: str, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        with self._lock:
            if kind == "DELETED":
                self._uid_to_key.pop(str(meta.get("uid")), None)
            else:
                self._uid_to_key[str(meta.get("uid"))] = key
        self.on_change(key)

    def _gates_changed(self, _kind: str, _obj: Obj) -> None:
        for key in self.vmis.keys():
            self.on_change(key)

    def _pod_changed(self, _kind: str, obj: Obj) -> None:
        vmi_uid = ((obj.get("metadata") or {}).get("labels") or {}).get(CREATED_BY_LABEL)
        if vmi_uid:
            self.handoff_changed(vmi_uid)

    def holds(self, vmi_uid: str) -> bool:
        """Whether a VMI with this uid is on this node as the caches see it."""
        with self._lock:
            return vmi_uid in self._uid_to_key

    def stop_requests(self) -> list[tuple[str, Handoff]]:
        """(slot, handoff) of each launcher asking for its guest to stop whose pod the API vouches
        for; the only ones the agent may act on once their VMI is gone."""
        pods = self.pods.items()
        return [(slot, h) for slot, h in self.slots.stopping() if vouches_for(pod_with_uid(pods, slot), h)]

    def handoff_changed(self, vmi_uid: str) -> None:
        key = self._uid_to_key.get(vmi_uid)
        if key is not None:
            self.on_change(key)
