"""The bare-metal agent assembled: manifest directory in, libvirt domains and a status file out."""

from __future__ import annotations

import queue
import threading
import time

import structlog

from handler.agent.agent import Engine, EngineSettings, StopPolicy
from handler.agent.ports import DeviceInspector
from handler.agent.reconciler import Reconciler
from handler.baremetal.directory_source import DirectorySource
from handler.baremetal.status_store import StatusStore
from handler.settings import AgentSettings
from handler.virt.domain_events import DomainEvent
from handler.virt.hypervisor import LibvirtHypervisor

log = structlog.get_logger("qat_handler.node")


class BareMetalNode:
    def __init__(self, settings: AgentSettings, inspector: DeviceInspector | None = None) -> None:
        self.settings = settings
        self._events: queue.SimpleQueue[DomainEvent | None] = queue.SimpleQueue()
        self.hypervisor = LibvirtHypervisor(settings.connect, on_event=self._events.put, on_reopen=self._reopened)
        self.store = StatusStore(settings.state_dir)
        self.source = DirectorySource(settings.vmi_dir, on_change=self._changed)
        self.reconciler = Reconciler(self.source, self.hypervisor, self.store, settings.plan_settings(), inspector)
        self.engine = Engine(
            self.reconciler, EngineSettings(workers=settings.workers, resync_seconds=settings.resync_seconds)
        )
        self._dispatcher: threading.Thread | None = None
        self.synced = threading.Event()

    def start(self) -> None:
        """Connect, read every manifest and start reconciling; raises VirtError if libvirt is unreachable."""
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        self.hypervisor.connect()
        self.store.start()
        self.source.scan()
        self._dispatcher = threading.Thread(target=self._dispatch, name="libvirt-dispatch", daemon=True)
        self._dispatcher.start()
        self.engine.start()
        self.source.start()
        log.info(
            "agent started",
            connect=self.settings.connect,
            vmi_dir=str(self.settings.vmi_dir),
            vmis=len(list(self.source.keys())),
        )

    def wait_synced(self, timeout: float) -> bool:
        """True once every VMI known at start has had its first pass."""
        done = self.engine.wait_idle(timeout)
        if done:
            self.synced.set()
        return done

    def run(self, stop: threading.Event, on_tick: object = None) -> None:
        next_resync = time.monotonic() + self.settings.resync_seconds
        while not stop.wait(0.5):
            if callable(on_tick):
                on_tick()
            if time.monotonic() >= next_resync:
                self.engine.resync()
                next_resync = time.monotonic() + self.settings.resync_seconds

    def shutdown(self, policy: StopPolicy) -> None:
        self.source.stop()
        self.engine.stop(policy)
        self._events.put(None)
        self.store.close()
        self.hypervisor.connection.close()

    def _changed(self, key: str) -> None:
        self.engine.enqueue(key)

    def _reopened(self) -> None:
        log.warning("libvirt connection re-established; resyncing", connect=self.settings.connect)
        self.engine.resync()

    def _dispatch(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            self.engine.on_domain_event(event.domain, event.kind)
