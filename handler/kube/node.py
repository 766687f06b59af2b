"""The Kubernetes agent assembled: VMIs from the API and devices from launcher handoffs in,
libvirt domains, VMI status and Events out."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import structlog
from kubernetes import client

from handler.agent.agent import Engine
from handler.agent.ports import DeviceInspector
from handler.agent.runtime import NodeRuntime
from handler.core.handoff import AgentReport, Handoff
from handler.core.status import VMIStatus
from handler.core.stop_policy import StopPolicy
from handler.host.guest_files import GuestFiles
from handler.host.net_bridges import is_host_bridge
from handler.kube.client import serves_vmi_status
from handler.kube.container_disks import LauncherContainerDisks
from handler.kube.handoff_slots import HandoffSlots
from handler.kube.informer import WatchSettings
from handler.kube.networks import KubeNetworks
from handler.kube.object_meta import uid_of
from handler.kube.pod_resources import PodResourcesClient
from handler.kube.secrets import KubeSecretReader
from handler.kube.source import KubeSource
from handler.kube.status_sink import KubeStatusSink
from handler.ops.metrics import Metrics
from handler.settings import AgentSettings

log = structlog.get_logger("qat_handler.kube")


class KubeNode:
    def __init__(
        self,
        settings: AgentSettings,
        api: client.ApiClient,
        node_name: str,
        inspector: DeviceInspector | None = None,
        kubevirt_namespace: str = "kubevirt",
        watch_settings: WatchSettings | None = None,
        metrics: Metrics | None = None,
        pod_resources: PodResourcesClient | None = None,
    ) -> None:
        self.settings = settings
        self.node_name = node_name
        self.slots = HandoffSlots(settings.run_dir, on_change=self._handoff_changed)
        self.source = KubeSource(
            api,
            node_name,
            self.slots,
            kubevirt_namespace=kubevirt_namespace,
            watch_settings=watch_settings or WatchSettings(),
            on_change=self._changed,
            on_watch_restart=metrics.count_watch_restart if metrics is not None else lambda _name: None,
            pod_resources=pod_resources,
        )
        self.status_subresource = serves_vmi_status(api)
        self.sink = KubeStatusSink(
            api, self.source.vmis, node_name, self.status_subresource, self._report, on_forget=self._release_launchers
        )
        disks = LauncherContainerDisks(
            self.source.pods.items, settings.host_root / "proc", settings.state_dir / "images", node_name
        )
        guest_files = GuestFiles(Path(settings.render.files_dir), disks, KubeSecretReader(api))
        self.runtime = NodeRuntime(
            settings,
            self.source,
            self.sink,
            inspector,
            metrics,
            networks=lambda _hypervisor: KubeNetworks(api, lambda name: is_host_bridge(settings.host_root, name)),
            guest_files=guest_files,
        )
        self._started = threading.Event()

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    def start(self, sync_timeout: float = 60.0) -> None:
        """Connect libvirt, fill the caches from the API, then reconcile. Until the first list is
        complete nothing is treated as deleted: a new cache is not evidence of a delete."""
        self.runtime.connect()
        if self.source.pod_resources is None:
            log.warning(
                "kubelet pod-resources socket not reachable: handoffs are not checked against kubelet's allocations",
                reason="AllocationCheckOff",
            )
        self.slots.scan()
        self.slots.start()
        self.source.start()
        while not self.source.wait_synced(sync_timeout):
            log.warning("still waiting for the first list from the API server", node=self.node_name)
        self.runtime.start()
        self._started.set()
        self._pass_over_gone([handoff for _slot, handoff in self.source.stop_requests()])  # asked meanwhile
        log.info(
            "agent started",
            mode="kubernetes",
            node=self.node_name,
            vmis=len(list(self.source.keys())),
            status_subresource=self.status_subresource,
        )

    def wait_synced(self, timeout: float) -> bool:
        return self._started.is_set() and self.engine.wait_idle(timeout)

    def run(self, stop: threading.Event, on_tick: Callable[[], None] | None = None) -> None:
        self.runtime.run(stop, on_tick, before_resync=self.slots.sweep)

    def reload(self) -> None:
        self.slots.scan()
        self.engine.resync()

    def shutdown(self, policy: StopPolicy) -> None:
        self.slots.stop()
        self.runtime.stop(policy)
        self.source.stop()

    def _changed(self, key: str) -> None:
        if self._started.is_set():
            self.engine.enqueue(key)

    def _handoff_changed(self, vmi_uid: str) -> None:
        if self.source.holds(vmi_uid) or not self._started.is_set():
            self.source.handoff_changed(vmi_uid)
            return
        self._pass_over_gone([h for _slot, h in self.source.stop_requests() if h.vmi_uid == vmi_uid])

    def _pass_over_gone(self, stop_requests: list[Handoff]) -> None:
        """A launcher whose VMI is gone (deleted before any guest ran, so no finalizer held it)
        waits for word before its pod may end. The word comes from a pass over the VMI's key,
        which runs after any pass still at work on it: see _release_launchers."""
        for handoff in stop_requests:
            if not self.source.holds(handoff.vmi_uid):
                self.engine.enqueue(handoff.key)

    def _release_launchers(self, key: str) -> None:
        """The agent is done with ``key`` and its domain is gone: a launcher of that key whose VMI
        is no longer on this node, and that asked for its guest to stop, may let its pod end.
        Safe because a domain is defined only under the finalizer, which keeps a VMI from
        being deleted until the domain is undefined."""
        for slot, handoff in self.source.stop_requests():
            if handoff.key != key or self.source.holds(handoff.vmi_uid) or self.slots.told_off(slot, handoff.vmi_uid):
                continue  # another VMI's, or still on the node, or told already (a slot outlives its pod)
            message = f"VMI {key} is gone and no guest of it runs on this node"
            if self._tell_launcher(key, slot, AgentReport(handoff.vmi_uid, "", guest_off=True, message=message)):
                log.info("launcher of a gone VMI released", vmi=key, pod_uid=slot)

    def _report(self, key: str, status: VMIStatus) -> None:
        """Tell the VMI's launcher how its guest is doing; it waits on this during pod shutdown."""
        obj = self.source.vmis.get(key)
        uid = uid_of(obj)
        slot = self.source.launcher_slot(uid) if uid else None
        if slot is None:
            return
        message = next((c.message for c in status.conditions if c.type == "Ready"), "")
        self._tell_launcher(key, slot.pod_uid, AgentReport(uid, str(status.phase), status.phase.terminal, message))

    def _tell_launcher(self, key: str, pod_uid: str, report: AgentReport) -> bool:
        try:
            self.slots.write_report(pod_uid, report)
        except OSError as error:
            log.warning("could not report to the launcher", vmi=key, pod_uid=pod_uid, error=str(error))
            return False
        return True
