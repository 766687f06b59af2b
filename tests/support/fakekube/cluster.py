"""A fake cluster: the fake API server, its garbage collector, a scheduler, and one fake
kubelet per node, each node with a simulated QAT host whose VFs its device plugin offers.

    with FakeCluster(tmp_path, nodes=(NodeSpec("node01", vfs=2),)) as cluster:
        core = client.CoreV1Api(cluster.api_client())
        ...                                   # create pods: they are bound, run, deleted
        node = cluster.node("node01")
        node.host_root, node.run_dir, node.vfs  # what an agent on that node is given

One thread drives the controllers: after every change in the store (and at least every
``resync`` seconds, for what the store does not see, such as a directory appearing on a
node) it runs the garbage collector, the scheduler, then each kubelet, each looking at the
cluster as it is (level-triggered, like the real controllers after a relist). Pods are
deleted gracefully here (``graceful.py``), since a kubelet is there to finish the job.
A failure inside a controller is kept in ``errors`` (tests assert it stays empty).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handler.core.bdf import Bdf
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host

from .devices import NodeDevices
from .gc import GarbageCollector
from .graceful import pod_grace
from .kubelet import FakeKubelet
from .scheduler import FakeScheduler
from .server import FakeApiServer

QAT_GENERIC = "qat.intel.com/generic"


@dataclass(frozen=True)
class NodeSpec:
    name: str = "node01"
    vfs: int = 2
    """VFs of one simulated C62x PF, all on vfio-pci, all offered as ``resource``."""
    resource: str = QAT_GENERIC
    labels: dict[str, str] = field(default_factory=dict)
    cpu: str = "8"
    memory: str = "16Gi"
    pods: int = 110
    pod_resources: bool = False
    """Also serve kubelet's pod-resources API (gRPC on a unix socket) with the node's allocations."""


@dataclass
class FakeNode:
    spec: NodeSpec
    root: Path
    """The node's filesystem: a pod's ``hostPath: /p`` is ``root/p``."""
    vfs: tuple[Bdf, ...]
    kubelet: FakeKubelet
    pod_resources: Any = None
    """A started ``tests.support.fake_kubelet.FakeKubelet`` when ``spec.pod_resources``."""

    @property
    def host_root(self) -> Path:
        """The simulated host's sysfs tree (``--host-root`` of an agent on this node)."""
        return self.root / "host"

    @property
    def run_dir(self) -> Path:
        """``/run/qat-handler`` on this node (``--run-dir``): launcher pods' slots are in ``pods/``."""
        return self.root / "run/qat-handler"

    @property
    def state_dir(self) -> Path:
        return self.root / "var/lib/qat-handler"

    @property
    def pod_resources_socket(self) -> Path | None:
        return self.pod_resources.socket_path if self.pod_resources is not None else None

    def free_vfs(self) -> tuple[str, ...]:
        return self.kubelet.devices.free(self.spec.resource)


class FakeCluster:
    def __init__(
        self,
        work: Path,
        nodes: Sequence[NodeSpec] = (NodeSpec(),),
        *,
        server: FakeApiServer | None = None,
        resync: float = 0.25,
    ) -> None:
        self.work = Path(work)
        self.server = server or FakeApiServer(bookmark_interval=0.5)
        self.registry, self.store = self.server.registry, self.server.store
        self.gc = GarbageCollector(self.store, self.registry)
        self.scheduler = FakeScheduler(self.store, self.registry)
        self.nodes = {spec.name: self._make_node(spec) for spec in nodes}
        self.errors: list[str] = []
        self._resync = resync
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._passes = threading.Condition()
        self._synced_rv = -1

    def _make_node(self, spec: NodeSpec) -> FakeNode:
        root = self.work / "nodes" / spec.name
        pf = SimulatedPf(family="C62x", bdf=Bdf(0, 0x3D, 0, 0), vfs=spec.vfs)
        vfs = build_simulated_host(root / "host", SimulatedHost(pfs=(pf,)))
        devices = NodeDevices({spec.resource: [str(v) for v in vfs]})
        pod_resources = None
        if spec.pod_resources:
            from tests.support.fake_kubelet import FakeKubelet as PodResourcesServer

            pod_resources = PodResourcesServer()
        kubelet = FakeKubelet(self.store, self.registry, spec.name, root, devices, pod_resources)
        return FakeNode(spec, root, vfs, kubelet, pod_resources)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeCluster:
        self.server.start()
        self.store.grace_for = pod_grace
        for node in self.nodes.values():
            if node.pod_resources is not None:
                node.pod_resources.start()
            self.server.put_object(node_object(node.spec, node.kubelet.devices.allocatable()))
        self._thread = threading.Thread(target=self._loop, name="fake-cluster", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self.store.cond:
            self.store.cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for node in self.nodes.values():
            node.kubelet.shutdown()
            if node.pod_resources is not None:
                node.pod_resources.__exit__(None, None, None)
        self.server.stop()

    def __enter__(self) -> FakeCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- access ------------------------------------------------------------------------------
    def node(self, name: str = "node01") -> FakeNode:
        return self.nodes[name]

    def api_client(self) -> Any:
        return self.server.api_client()

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        return self.server.write_kubeconfig(path, namespace=namespace)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until the controllers have made a whole pass over the cluster as it is now (and over
        whatever that pass changed), so a test can check that something did *not* happen."""
        deadline = time.monotonic() + timeout
        while True:
            target = self.store.rv
            with self._passes:
                done = self._passes.wait_for(self._synced_to(target), max(deadline - time.monotonic(), 0))
            if not done:
                raise AssertionError(f"the fake cluster's controllers did not settle within {timeout} s")
            if self.store.rv == target:
                return

    def _synced_to(self, rv: int) -> Callable[[], bool]:
        return lambda: self._synced_rv >= rv

    # -- the controllers' loop ---------------------------------------------------------------
    def _loop(self) -> None:
        seen = -1
        while not self._stopping.is_set():
            seen = self.store.rv
            for part in (self.gc.sync, self.scheduler.sync, *(n.kubelet.sync for n in self.nodes.values())):
                try:
                    part()
                except Exception:  # a bug in the fake: keep it for the test to report, and go on
                    self.errors.append(traceback.format_exc())
            with self._passes:
                self._synced_rv = seen
                self._passes.notify_all()
            self.store.wait_for(lambda s=seen: self.store.rv != s or self._stopping.is_set(), self._resync)


def node_object(spec: NodeSpec, devices: dict[str, str]) -> dict[str, Any]:
    allocatable = {"cpu": spec.cpu, "memory": spec.memory, "pods": str(spec.pods), **devices}
    labels = {"kubernetes.io/hostname": spec.name, "kubernetes.io/os": "linux", **spec.labels}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {},
        "status": {
            "capacity": allocatable,
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": spec.name,
                "containerRuntimeVersion": "fake://1",
                "kernelVersion": "6.1.0",
                "kubeProxyVersion": "",
                "kubeletVersion": "v1.33.0-fake",
                "machineID": spec.name,
                "operatingSystem": "linux",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "systemUUID": spec.name,
            },
        },
    }
