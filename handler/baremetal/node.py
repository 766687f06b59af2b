"""The bare-metal agent assembled: manifest directory in, libvirt domains and a status file out."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from handler.agent.agent import Engine
from handler.agent.ports import DeviceInspector
from handler.agent.reconciler import Reconciler
from handler.agent.runtime import NodeRuntime
from handler.baremetal.allocator import VfAllocator
from handler.baremetal.directory_source import DirectorySource
from handler.baremetal.status_store import StatusStore
from handler.core.permitted_devices import PermittedDevices
from handler.core.stop_policy import StopPolicy
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
        write_failed = metrics.count_state_write_failure if metrics is not None else lambda _file: None
        self.store = StatusStore(settings.state_dir, on_write_failure=write_failed)
        self.source = DirectorySource(settings.vmi_dir, on_change=self._changed)
        self.allocator = VfAllocator(settings.state_dir, settings.host_root, permitted, write_failed)
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
        """Connect, read every manifest and start reconciling; raises VirtError if libvirt is unreachable."""
        self.runtime.connect()
        self.store.start()
        self.source.scan()
        self.allocator.adopt(self.reconciler.owned_domains(), set(self.source.keys()))
        self.runtime.start()
        # A status whose manifest and domain are both gone (the agent died between undefine and
        # forget) has nothing else to bring it to a pass: it is forgotten now.
        for key in self.store.keys():
            if not self.source.knows(key):
                self.engine.enqueue(key)
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

    def run(self, stop: threading.Event, on_tick: Callable[[], None] | None = None) -> None:
        self.runtime.run(stop, on_tick, before_resync=self.source.sweep)

    def reload(self) -> None:
        """SIGHUP: re-read the manifest directory; running guests are untouched unless their manifest changed."""
        self.source.rescan()
        self.engine.resync()

    def shutdown(self, policy: StopPolicy) -> None:
        self.source.stop()
        self.runtime.stop(policy)
        self.store.close()

    def _changed(self, key: str) -> None:
        self.engine.enqueue(key)
