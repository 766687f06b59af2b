"""The part of a node agent both modes share: libvirt, the reconciler, the engine and the
dispatch of lifecycle events. Bare metal and Kubernetes differ only in source and sink."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from handler.agent.agent import Engine, EngineSettings
from handler.agent.keyed_queue import KeyedQueue
from handler.agent.ports import (
    DesiredSource,
    DeviceAllocator,
    DeviceInspector,
    GuestFilePreparer,
    NetworkResolver,
    StatusSink,
)
from handler.agent.reconciler import Reconciler
from handler.core.numa import NumaPolicy
from handler.core.stop_policy import StopPolicy
from handler.host.guest_files import GuestFiles
from handler.host.image_cache import ImageCache
from handler.host.numa_topology import read_numa_topology
from handler.ops.metrics import Metrics
from handler.ops.sdnotify import Notifier
from handler.settings import AgentSettings
from handler.virt.domain_events import DomainEvent
from handler.virt.errors import VirtError
from handler.virt.hypervisor import LibvirtHypervisor

log = structlog.get_logger("qat_handler.runtime")


def bare_metal_guest_files(settings: AgentSettings) -> GuestFiles:
    """Guest files with an image cache that fetches containerDisks itself (skopeo)."""
    images = ImageCache(
        settings.state_dir / "images", settings.image_store, insecure_registries=settings.insecure_registries
    )
    return GuestFiles(Path(settings.render.files_dir), images)


class NodeRuntime:
    def __init__(
        self,
        settings: AgentSettings,
        source: DesiredSource,
        sink: StatusSink,
        inspector: DeviceInspector | None = None,
        metrics: Metrics | None = None,
        allocator: DeviceAllocator | None = None,
        networks: Callable[[LibvirtHypervisor], NetworkResolver] | None = None,
        guest_files: GuestFilePreparer | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._events: queue.SimpleQueue[DomainEvent | None] = queue.SimpleQueue()
        self.hypervisor = LibvirtHypervisor(settings.connect, on_event=self._events.put, on_reopen=self._reopened)
        numa = None if settings.numa_placement is NumaPolicy.NONE else read_numa_topology(settings.host_root)
        work = KeyedQueue(time.monotonic)
        self.guest_files = guest_files or bare_metal_guest_files(settings)
        self.reconciler = Reconciler(
            source,
            self.hypervisor,
            sink,
            settings.plan_settings(numa),
            inspector,
            metrics=metrics,
            allocator=allocator,
            networks=networks(self.hypervisor) if networks is not None else None,
            addresses=self.hypervisor,
            guest_files=self.guest_files,
            requeue=work.add,
        )
        self.engine = Engine(
            self.reconciler,
            EngineSettings(workers=settings.workers, resync_seconds=settings.resync_seconds),
            extend_stop=Notifier().extend_timeout,
            queue=work,
        )
        self._dispatcher: threading.Thread | None = None
        self._lost = False

    def connect(self) -> None:
        """Make the serial log directory and open libvirt; raises VirtError with a one-line fix if
        libvirt is unreachable, OSError if the directory cannot be made."""
        log_dir = Path(self.settings.render.log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        # QEMU writes the serial logs as libvirt's qemu user: it must be able to reach the files.
        log_dir.chmod(0o711)
        self.hypervisor.connect()

    def start(self) -> None:
        # Files of VMIs whose domain is gone (undefined while the agent was down, or never
        # defined after a crash): whatever still needs them makes them again.
        owned = self.reconciler.owned_domains()
        self.guest_files.sweep({d.identity.uid for d in owned if d.identity is not None})
        self._dispatcher = threading.Thread(target=self._dispatch, name="libvirt-dispatch", daemon=True)
        self._dispatcher.start()
        self.engine.start()

    def stop(self, policy: StopPolicy) -> None:
        self.engine.stop(policy)
        self.guest_files.close()
        self._events.put(None)
        self.hypervisor.connection.close()

    def run(
        self,
        stop: threading.Event,
        on_tick: Callable[[], None] | None = None,
        before_resync: Callable[[], None] | None = None,
    ) -> None:
        """The main loop: tick twice a second and resync every VMI every ``resync_seconds``
        (``before_resync``: the source's own look for changes its watch missed)."""
        next_resync = time.monotonic() + self.settings.resync_seconds
        while not stop.wait(0.5):
            self._keep_connected()
            if on_tick is not None:
                on_tick()
            if time.monotonic() >= next_resync:
                if before_resync is not None:
                    before_resync()
                self.engine.resync()
                next_resync = time.monotonic() + self.settings.resync_seconds

    def refresh_gauges(self) -> None:
        """Point-in-time metrics, refreshed from the main loop."""
        if self.metrics is None:
            return
        phases, _ = self.reconciler.summary()
        self.metrics.set_phase_counts(phases)
        self.metrics.set_devices_assigned(len(self.reconciler.devices.claims.snapshot()))
        self.metrics.set_libvirt_connected(self.hypervisor.connection.connected)

    @property
    def ready(self) -> bool:
        return self.hypervisor.connection.connected

    def _keep_connected(self) -> None:
        """Reopen a broken libvirt connection from the main loop (the connection spaces the attempts
        out), so readiness and the connected gauge follow libvirtd even when no VMI needs a call."""
        if self.hypervisor.connection.connected:
            self._lost = False
            return
        if not self._lost:
            log.warning("libvirt connection lost; reconnecting", connect=self.settings.connect)
            self._lost = True
        with contextlib.suppress(VirtError):
            self.hypervisor.connect()

    def _reopened(self) -> None:
        log.warning("libvirt connection re-established; resyncing", connect=self.settings.connect)
        self.engine.resync(background=False)  # what changed during the outage is seen at once

    def _dispatch(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            self.engine.on_domain_event(event.domain, event.kind)
