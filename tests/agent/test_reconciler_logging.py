"""What the reconciler logs on the happy path: one info line per VMI per transition.

A VMI that is defined and started in one pass makes two transitions (its Created and Started
events), so it gets exactly two info lines; the libvirt calls behind them are logged at debug.
A later pass that finds the guest running and its status current logs nothing at info.
The real Reconciler runs on an in-memory hypervisor; the log is captured from structlog.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from handler.agent.reconciler import Reconciler
from handler.core.actions import RecordEvent, StartDomain
from handler.core.bdf import Bdf
from handler.core.desired import Desired, Intent
from handler.core.domain_identity import read_identity
from handler.core.domain_state import ObservedDomain, Power
from handler.core.planner import PlanSettings
from handler.core.render_settings import RenderSettings
from handler.core.status import VMIStatus
from handler.core.vmi import VMI
from handler.host.domain_templates import load_templates

SETTINGS = PlanSettings(RenderSettings(domain_type="qemu", log_dir="/logs", templates=load_templates()))
VM = VMI("ns", "vm", "uid-vm", 1, (), False, 1, 2**28, (), None, (), 30, "0" * 16)


class Libvirt:
    """Domains in memory: define keeps the XML's identity, start powers the domain on."""

    def __init__(self) -> None:
        self.domains: dict[str, ObservedDomain] = {}

    def observe(self, name: str) -> ObservedDomain | None:
        return self.domains.get(name)

    def observe_alone(self, name: str) -> ObservedDomain | None:
        return self.observe(name)

    def define(self, xml: str) -> None:
        identity = read_identity(xml)
        assert identity is not None
        name = f"{identity.namespace}_{identity.name}"
        self.domains[name] = ObservedDomain(name, "uuid", Power.SHUTOFF, None, identity)

    def start(self, name: str) -> None:
        domain = self.domains[name]
        self.domains[name] = ObservedDomain(name, domain.uuid, Power.RUNNING, None, domain.identity)

    def list_managed(self) -> list[ObservedDomain]:
        return list(self.domains.values())

    def foreign_devices(self, owner: str) -> dict[Bdf, str]:
        return {}


class Source:
    def desired(self, key: str) -> Desired | None:
        return Desired(key, Intent.RUN, VM) if key == "ns/vm" else None

    def keys(self) -> Iterable[str]:
        return ["ns/vm"]

    def knows(self, key: str) -> bool:
        return key == "ns/vm"


class Sink:
    def __init__(self) -> None:
        self.statuses: dict[str, VMIStatus] = {}
        self.events: list[str] = []

    def claim(self, key: str) -> None: ...
    def keys(self) -> tuple[str, ...]:
        return ()

    def last_status(self, key: str) -> VMIStatus | None:
        return self.statuses.get(key)

    def write(self, key: str, status: VMIStatus) -> None:
        self.statuses[key] = status

    def record_event(self, key: str, event: RecordEvent) -> None:
        self.events.append(event.reason)

    def forget(self, key: str) -> None:
        self.statuses.pop(key, None)


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every line at every level, whatever an earlier test configured."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(**saved)


def test_a_vmi_started_in_one_pass_gets_one_info_line_per_transition(logs: list[dict[str, Any]]) -> None:
    hypervisor, sink = Libvirt(), Sink()
    reconciler = Reconciler(Source(), hypervisor, sink, SETTINGS)
    reconciler.reconcile("ns/vm")
    assert hypervisor.domains["ns_vm"].power is Power.RUNNING
    assert sink.events == ["Created", "Started"]
    info = [(line["event"], line.get("reason")) for line in logs if line["log_level"] == "info"]
    assert info == [("defined domain ns_vm", "Created"), ("started domain ns_vm", "Started")]
    debug = [line["event"] for line in logs if line["log_level"] == "debug"]
    assert debug == ["domain defined", "domain started"]
    assert all(line["vmi"] == "ns/vm" and line["domain"] == "ns_vm" for line in logs)

    logs.clear()
    reconciler.reconcile("ns/vm")
    assert [line["event"] for line in logs if line["log_level"] != "debug"] == [], "nothing changed: quiet"


def test_a_start_without_its_started_event_still_gets_an_info_line(logs: list[dict[str, Any]]) -> None:
    hypervisor = Libvirt()
    reconciler = Reconciler(Source(), hypervisor, Sink(), SETTINGS)
    reconciler.reconcile("ns/vm")
    hypervisor.domains["ns_vm"] = replace(hypervisor.domains["ns_vm"], power=Power.SHUTOFF)
    logs.clear()
    reconciler._execute("ns/vm", (StartDomain("ns_vm"),), structlog.get_logger().bind(vmi="ns/vm", domain="ns_vm"))
    assert [(line["event"], line["log_level"]) for line in logs] == [("domain started", "info")]
