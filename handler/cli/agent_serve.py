"""The running agent: its node (bare metal or Kubernetes), probes, signals and stop policy."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Protocol

import structlog

from handler.agent.agent import Engine
from handler.agent.liveness import Liveness
from handler.agent.runtime import NodeRuntime
from handler.cli.coexistence import refuse_beside_kubevirt
from handler.cli.common import fail, permitted_devices
from handler.core.port_error import PortError
from handler.core.refusal import Refused
from handler.core.stop_policy import StopPolicy
from handler.host.fresh_checks import FreshDeviceChecks
from handler.ops.health_server import HealthServer, parse_address
from handler.ops.heartbeat import Heartbeat
from handler.ops.logs import configure_logging
from handler.ops.metrics import Metrics
from handler.ops.sdnotify import Notifier
from handler.ops.state_lock import StateDirInUse, lock_state_dir
from handler.ops.stop_signals import StopSignals
from handler.settings import AgentSettings

log = structlog.get_logger("qat_handler.cli")
LIVENESS_SECONDS = 90.0
"""/healthz fails when the main loop or a reconcile worker has not turned for this long: longer
than libvirt's slowest legitimate call (a first define on a fresh libvirtd probes QEMU, 26 s
measured, 30-55 s on a slow host), as the unit's watchdog (half of WatchdogSec=3min)."""


class Node(Protocol):
    runtime: NodeRuntime

    @property
    def engine(self) -> Engine: ...
    def start(self) -> None: ...
    def wait_synced(self, timeout: float) -> bool: ...
    def run(self, stop: threading.Event, on_tick: Callable[[], None] | None = None) -> None: ...
    def reload(self) -> None: ...
    def shutdown(self, policy: StopPolicy) -> None: ...


def run_agent(args: argparse.Namespace, settings: AgentSettings) -> int:
    """Build the node the flags ask for, serve until a stop signal, then apply the stop policy."""
    configure_logging(settings.log_format, settings.log_level)
    if settings.metrics_address is not None:
        try:
            parse_address(settings.metrics_address)
        except ValueError as error:
            return fail(
                f"--metrics-address {settings.metrics_address}: {error}; fix: use HOST:PORT, e.g. 127.0.0.1:9471"
            )
    try:
        checks = FreshDeviceChecks(settings.host_root, permitted_devices(args))
    except Refused as refused:
        return fail(refused.refusal.line())
    try:
        lock_state_dir(settings.state_dir)  # held until the process ends
    except StateDirInUse as error:
        return fail(str(error))
    except OSError as error:
        return fail(_start_error(error))
    metrics = Metrics()
    try:
        node = (
            _kube_node(args, settings, metrics, checks)
            if args.kubernetes
            else _bare_metal_node(settings, metrics, checks)
        )
    except Refused as refused:
        return fail(refused.refusal.line())
    if isinstance(node, int):
        return node
    probes = Probes(node, Liveness(node.engine.pulse, Heartbeat(Notifier()), stall_seconds=LIVENESS_SECONDS))
    # Up before start(): a start that waits on libvirt or the API is then visible in /readyz.
    server = probes.serve(metrics, settings.metrics_address)
    try:
        node.start()
    except (PortError, Refused, OSError) as error:
        if server is not None:
            server.stop()
        return fail(_start_error(error))

    def reload_config() -> None:
        try:
            checks.use(permitted_devices(args))
        except Refused as refused:
            log.error("permitted devices not reloaded; keeping the previous list", error=refused.refusal.line())

    return serve(node, StopPolicy(settings.on_stop), probes, server, reload_config)


def _start_error(error: Exception) -> str:
    if isinstance(error, Refused):
        return error.refusal.line()
    if isinstance(error, OSError) and not isinstance(error, PortError):
        return f"{error.filename}: {error.strerror}; fix: check the path and its permissions"
    return str(error)


class Probes:
    """The answers to /healthz and /readyz, and the watchdog feed, for one node."""

    def __init__(self, node: Node, liveness: Liveness) -> None:
        self.node = node
        self.liveness = liveness
        self.synced = threading.Event()

    def ready(self) -> tuple[bool, str]:
        if not self.synced.is_set():
            return False, "first sync not done"
        if not self.node.runtime.ready:
            return False, f"libvirt {self.node.runtime.settings.connect} not connected"
        return True, "ok"

    def serve(self, metrics: Metrics, address: str | None) -> HealthServer | None:
        if address is None:
            return None
        server = HealthServer(address, metrics, live=self.liveness.alive, ready=self.ready)
        port = server.start()
        log.info("serving metrics and health", address=address, port=port)
        return server


def _bare_metal_node(settings: AgentSettings, metrics: Metrics, checks: FreshDeviceChecks) -> Node | int:
    from handler.baremetal.node import BareMetalNode

    if not settings.vmi_dir.is_dir():
        return fail(f"--vmi-dir {settings.vmi_dir} is not a directory; fix: create it or point --vmi-dir elsewhere")
    return BareMetalNode(settings, checks, metrics, checks.permitted)


def _kube_node(
    args: argparse.Namespace, settings: AgentSettings, metrics: Metrics, checks: FreshDeviceChecks
) -> Node | int:
    from handler.kube.client import KubeConfigError, api_client
    from handler.kube.node import KubeNode
    from handler.kube.pod_resources import PodResourcesClient

    if not args.node_name:
        return fail("--node-name is not set; fix: pass --node-name or set NODE_NAME (downward API spec.nodeName)")
    try:
        api = api_client()
    except KubeConfigError as error:
        return fail(str(error))
    refused = refuse_beside_kubevirt(api, args.kubevirt_namespace, "the qat-handler agent")
    if refused is not None:
        return fail(refused)
    kubelet = PodResourcesClient(args.pod_resources_socket)
    return KubeNode(
        settings,
        api,
        args.node_name,
        checks,
        args.kubevirt_namespace,
        metrics=metrics,
        pod_resources=kubelet if kubelet.available() else None,
    )


def serve(
    node: Node,
    policy: StopPolicy,
    probes: Probes,
    server: HealthServer | None,
    reload_config: Callable[[], None] = lambda: None,
) -> int:
    """Run until a stop signal, keeping systemd and the probes informed; then apply the stop policy."""
    signals = StopSignals()
    stop = signals.event
    notifier = Notifier()

    def on_reload_signal(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=_reload, args=(node, notifier, reload_config), daemon=True).start()

    def tick() -> None:
        probes.liveness.tick()
        node.runtime.refresh_gauges()
        notifier.status(status_line(node.engine))

    signals.install()
    signal.signal(signal.SIGHUP, on_reload_signal)
    while not stop.is_set() and not node.wait_synced(0.5):
        tick()
    if not stop.is_set():
        probes.synced.set()
        tick()
        notifier.ready()
        log.info("first sync done")
    node.run(stop, on_tick=tick)
    if signals.received:
        log.info("stop signal received", signal=signals.received[0])
    notifier.stopping()
    node.shutdown(policy)
    if server is not None:
        server.stop()
    log.info("agent stopped", policy=str(policy))
    return 0


def status_line(engine: Engine) -> str:
    phases, failing = engine.reconciler.summary()
    return f"{sum(phases.values())} VMIs, {phases.get('Running', 0)} running, {failing} failing"


def _reload(node: Node, notifier: Notifier, reload_config: Callable[[], None]) -> None:
    """SIGHUP: re-read the permitted-devices file, the manifests or handoffs; guests are not touched."""
    notifier.reloading()
    log.info("reloading")
    reload_config()
    node.reload()
    notifier.ready()
