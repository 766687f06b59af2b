"""Lifecycle events as small values. The libvirt callback only builds one and hands it on."""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

_NAMES = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}


@dataclass(frozen=True, slots=True)
class DomainEvent:
    domain: str
    kind: str
    detail: int


def lifecycle_event(domain_name: str, event: int, detail: int) -> DomainEvent:
    return DomainEvent(domain_name, _NAMES.get(event, f"event-{event}"), detail)
