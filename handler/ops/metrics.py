"""The agent's Prometheus metrics, in a registry of their own so each test can make a fresh one."""

from __future__ import annotations

import platform
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from handler import __version__

SHUTDOWN_OUTCOMES = ("guest_poweroff", "destroyed", "already_off")
"""Known outcomes start at 0, so rate() works from the first shutdown on."""

_RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    def __init__(self, version: str = __version__) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self._vmis = Gauge("qat_handler_vmis", "VMIs handled by this node, by phase.", ["phase"], registry=reg)
        self._reconcile = Histogram(
            "qat_handler_reconcile_duration_seconds",
            "Time taken by one reconcile of one VMI.",
            buckets=_RECONCILE_BUCKETS,
            registry=reg,
        )
        self._errors = Counter(
            "qat_handler_reconcile_errors", "Reconciles that failed, by reason.", ["reason"], registry=reg
        )
        self._devices = Gauge("qat_handler_devices_assigned", "QAT VFs held by defined domains.", registry=reg)
        self._libvirt = Gauge("qat_handler_libvirt_connected", "1 while the libvirt connection is up.", registry=reg)
        self._watch_restarts = Counter(
            "qat_handler_watch_restarts", "Watches restarted, by source.", ["source"], registry=reg
        )
        self._shutdowns = Counter(
            "qat_handler_shutdowns", "Guest shutdowns carried out, by outcome.", ["outcome"], registry=reg
        )
        for outcome in SHUTDOWN_OUTCOMES:
            self._shutdowns.labels(outcome=outcome)
        self._state_writes = Counter(
            "qat_handler_state_write_failures",
            "Writes of the agent's state files that failed (a full disk, a read-only mount), by file.",
            ["file"],
            registry=reg,
        )
        add_process_metrics(reg, version)
        self._phases: set[str] = set()

    def set_phase_counts(self, counts: Mapping[str, int]) -> None:
        """Replace the per-phase counts; a phase absent now but seen before drops to 0."""
        for phase in self._phases - counts.keys():
            self._vmis.labels(phase=phase).set(0)
        for phase, count in counts.items():
            self._vmis.labels(phase=phase).set(count)
        self._phases |= counts.keys()

    def observe_reconcile(self, seconds: float) -> None:
        self._reconcile.observe(seconds)

    def count_error(self, reason: str) -> None:
        self._errors.labels(reason=reason).inc()

    def set_devices_assigned(self, count: int) -> None:
        self._devices.set(count)

    def set_libvirt_connected(self, connected: bool) -> None:
        self._libvirt.set(1 if connected else 0)

    def count_watch_restart(self, source: str) -> None:
        self._watch_restarts.labels(source=source).inc()

    def count_shutdown(self, outcome: str) -> None:
        self._shutdowns.labels(outcome=outcome).inc()

    def count_state_write_failure(self, file: str) -> None:
        self._state_writes.labels(file=file).inc()

    def render(self, accept: str = "") -> tuple[bytes, str]:
        return render(self.registry, accept)


def add_process_metrics(registry: CollectorRegistry, version: str) -> None:
    """What every qat-handler process serves: its build, and the process, platform and GC collectors."""
    # No `<name>_created` series: in the text format each would be one more gauge per counter and
    # histogram (and per label set), which dashboards must then filter out. Process-wide, and each
    # qat-handler process serves only its own registry.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # the library leaves it untyped
    info = Gauge(
        "qat_handler_build_info", "Always 1; labels carry the build.", ["version", "python"], registry=registry
    )
    info.labels(version=version, python=platform.python_version()).set(1)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


def render(registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """The exposition for a scrape and its content type, negotiated from the Accept header."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
