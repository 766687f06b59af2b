"""What the agent reports about a VMI: phase, conditions and assigned devices (KubeVirt's shape)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from handler.core.device_env import AssignedDevice
from handler.core.interface_status import InterfaceStatus


class Phase(StrEnum):
    SCHEDULED = "Scheduled"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: bool
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class VMIStatus:
    phase: Phase
    domain: str
    conditions: tuple[Condition, ...] = ()
    devices: tuple[AssignedDevice, ...] = ()
    reason: str = ""
    """CamelCase reason for the phase, set when it is Failed."""
    spec_digest: str = ""
    """The desired-state digest this status describes; a terminal phase sticks only to it."""
    interfaces: tuple[InterfaceStatus, ...] = ()
    """The guest's NICs with the addresses learned for them, while it runs."""

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)

    def with_condition(self, new: Condition) -> VMIStatus:
        kept = tuple(c for c in self.conditions if c.type != new.type)
        return replace(self, conditions=(*kept, new))


def ready(status: bool, reason: str = "", message: str = "") -> Condition:
    return Condition("Ready", status, reason, message)


def synchronized(status: bool, reason: str = "", message: str = "") -> Condition:
    return Condition("Synchronized", status, reason, message)
