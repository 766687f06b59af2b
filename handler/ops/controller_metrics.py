"""The controller's Prometheus metrics, in a registry of their own (one per replica, one per test)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from handler import __version__
from handler.ops.metrics import add_process_metrics, render

POD_ACTIONS = ("created", "deleted")
PHASES = ("Pending", "Scheduling", "Scheduled", "Failed")
"""The phases the controller writes; each starts at 0, so rate() works from the first write on."""


class ControllerMetrics:
    def __init__(self, version: str = __version__) -> None:
        self.registry = reg = CollectorRegistry()
        self._leading = Gauge(
            "qat_handler_controller_leading", "1 while this replica holds the Lease and acts.", registry=reg
        )
        self._pods = Counter(
            "qat_handler_controller_launcher_pods",
            "Launcher pods this replica made or removed.",
            ["action"],
            registry=reg,
        )
        self._phases = Counter(
            "qat_handler_controller_vmi_phases_written",
            "VMI phase changes this replica wrote, by the phase written.",
            ["phase"],
            registry=reg,
        )
        self._errors = Counter(
            "qat_handler_controller_api_errors", "Kubernetes API calls that failed, by call.", ["call"], registry=reg
        )
        self._queue = Gauge(
            "qat_handler_controller_queue_depth", "VMIs waiting in, or being worked on from, the queue.", registry=reg
        )
        self._lease = Counter(
            "qat_handler_controller_lease_rounds", "Rounds of leader election, by outcome.", ["outcome"], registry=reg
        )
        for action in POD_ACTIONS:
            self._pods.labels(action=action)
        for phase in PHASES:
            self._phases.labels(phase=phase)
        add_process_metrics(reg, version)

    def set_leading(self, leading: bool) -> None:
        self._leading.set(1 if leading else 0)

    def count_pod(self, action: str) -> None:
        self._pods.labels(action=action).inc()

    def count_phase(self, phase: str) -> None:
        self._phases.labels(phase=phase).inc()

    def count_api_error(self, call: str) -> None:
        self._errors.labels(call=call).inc()

    def count_lease_round(self, outcome: str) -> None:
        self._lease.labels(outcome=outcome).inc()

    def track_queue(self, depth: Callable[[], int]) -> None:
        self._queue.set_function(depth)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        return render(self.registry, accept)
