"""What libvirt says about one of our domains, without depending on libvirt."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from handler.core.domain_identity import DomainIdentity


class Power(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SHUTTING_DOWN = "shutting-down"
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    OTHER = "other"


class StopCause(StrEnum):
    NEVER_STARTED = "never-started"
    GUEST_POWEROFF = "guest-poweroff"
    DESTROYED = "destroyed"
    CRASHED = "crashed"
    FAILED = "failed"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class ObservedDomain:
    name: str
    uuid: str
    power: Power
    stop_cause: StopCause | None
    """Why an inactive domain stopped; None while it is active."""
    identity: DomainIdentity | None
    """Our metadata, or None for a domain the agent does not manage."""

    @property
    def active(self) -> bool:
        return self.power not in (Power.SHUTOFF, Power.CRASHED)
