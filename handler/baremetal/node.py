"""The bare-metal agent assembled: manifest directory in, libvirt domains and a status file out."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from handler.agent.agent import Engine, StopPolicy
from handler.agent.ports import DeviceInspector
from handler.agent.reconciler import Reconciler
from handler.agent.runtime import NodeRuntime
from handler.baremetal.allocator import VfAllocator
from handler.baremetal.directory_source import DirectorySource
from handler.baremetal.status_store import StatusStore
from handler.core.permitted_devices import PermittedDevices
from handler.host.net_bridges import is_host_bridge
from handler.ops.metrics import Metrics
from handler.settings import AgentSettings
from handler.virt.guest_network import LibvirtNetworks
from handler.virt.hypervisor import LibvirtHypervisor

log = structlog.get_logger("qat_handler.node")


class BareMetalNode:
    def __init__(
        self,
        settings: AgentSettings,
        inspector: DeviceInspector | None = None,
        metrics: Metrics | None = None,
        permitted: PermittedDevices | None = None,
    ) -> None:
        self.settings = settings
        self.store = StatusStore(settings.state_dir)
        self.source = DirectorySource(settings.vmi_dir, on_change=self._changed)
        self.allocator = VfAllocator(settings.state_dir, settings.host_root, permitted)
        self.runtime = NodeRuntime(
            settings,
            self.source,
            self.store,
            inspector,
            metrics,
            self.allocator,
            networks=lambda hypervisor: LibvirtNetworks(
                hypervisor.connection,
                settings.render.default_network,
                lambda name: is_host_bridge(settings.host_root, name),
            ),
        )
        self.synced = threading.Event()
        self.read = threading.Event()
        """Set once the first read of every manifest is complete."""
        self._reader: threading.Thread | None = None

    @property
    def hypervisor(self) -> LibvirtHypervisor:
        return self.runtime.hypervisor

    @property
    def reconciler(self) -> Reconciler:
        return self.runtime.reconciler

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    def start(self) -> None:
        """Connect, start reconciling and read every manifest meanwhile; raises VirtError if libvirt
        is unreachable, OSError if the manifest directory cannot be listed."""
        self.runtime.connect()
        self.store.start()
        self.source.start()  # watching first: a manifest written from now on is not missed
        manifests = self.source.listing()
        self.reconciler.first_read.begin()
        self.runtime.start()
        self._reader = threading.Thread(target=self._read_all, args=(manifests,), name="first-read", daemon=True)
        self._reader.start()

    def _read_all(self, manifests: set[Path]) -> None:
        """The first read, beside the workers; each VMI is queued as it is read."""
        try:
            self.source.read(manifests)
            self.allocator.adopt(self.reconciler.owned_domains(), set(self.source.keys()))
        except Exception:  # the read stays incomplete: no unread VMI is ever taken for removed
            log.exception("reading the manifests failed; VMIs not read yet are left alone")
            return
        # Every adopted domain was queued at engine start; those looked at too early come back.
        for key in self.reconciler.first_read.done():
            self.engine.enqueue(key)
        self.read.set()
        log.info(
            "agent started",
            connect=self.settings.connect,
            vmi_dir=str(self.settings.vmi_dir),
            vmis=len(list(self.source.keys())),
        )

    def wait_synced(self, timeout: float) -> bool:
        """True once every manifest has been read and every VMI has had its first pass."""
        done = self.read.wait(timeout) and self.engine.wait_idle(timeout)
        if done:
            self.synced.set()
        return done

    def run(self, stop: threading.Event, on_tick: Callable[[], None] | None = None) -> None:
        self.runtime.run(stop, on_tick)

    def reload(self) -> None:
        """SIGHUP: re-read the manifest directory; running guests are untouched unless their manifest changed."""
        self._join_reader()
        self.source.scan()
        self.engine.resync()

    def shutdown(self, policy: StopPolicy) -> None:
        self._join_reader()
        self.source.stop()
        self.runtime.stop(policy)
        self.store.close()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join()

    def _changed(self, key: str) -> None:
        self.engine.enqueue(key)
