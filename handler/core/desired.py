"""The planner's inputs: what the source wants for one VMI, and what the shell has observed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from handler.core.attachments import Attachment
from handler.core.device_env import AssignedDevice
from handler.core.domain_state import ObservedDomain
from handler.core.interface_status import GuestAddress
from handler.core.refusal import Refusal
from handler.core.status import VMIStatus
from handler.core.vmi import VMI, domain_name_for


class Intent(StrEnum):
    RUN = "run"
    """Keep the guest running."""
    STOP = "stop"
    """Shut the guest down and release its devices, but keep the VMI and its final status."""
    REMOVE = "remove"
    """The VMI is gone or being deleted: shut down, undefine, then forget it."""
    HALT = "halt"
    """The agent itself is stopping: shut down but keep the domain, and start it again on return."""


@dataclass(frozen=True, slots=True)
class Desired:
    key: str
    intent: Intent
    vmi: VMI | None
    """None when the VMI is gone, or when its manifest could not be read at all."""
    devices: tuple[AssignedDevice, ...] = ()
    blocked: Refusal | None = None
    """Why the guest may not be (re)started now; a running guest is never stopped for it."""
    allocate: bool = False
    """The devices are for the node's allocator to pick (bare metal, no env file)."""
    attachments: tuple[Attachment, ...] | None = None
    """Where each NIC plugs in, from the node's network resolver; None: the bare-metal defaults."""

    @property
    def domain_name(self) -> str:
        return domain_name_for(self.key)


@dataclass(frozen=True, slots=True)
class StopProgress:
    """The shell's memory of an ongoing stop, fed back to the planner as an observation."""

    started_at: float
    last_request_at: float
    requests: int
    destroyed_after: float | None = None
    """Seconds from the first press to the destroy, once one is issued."""
    destroy_issued_at: float | None = None
    """When the last destroy was handed to libvirt (it runs off the reconcile workers)."""
    destroy_failures: int = 0
    destroy_error: tuple[str, str] | None = None
    """(reason, message) of the last destroy that failed; None once one succeeded."""
    grace: float | None = None
    """The grace the last press promised; with ``started_at`` it is the destroy's deadline."""


@dataclass(frozen=True, slots=True)
class Observed:
    domain: ObservedDomain | None
    status: VMIStatus | None
    """The status the agent last wrote for this VMI."""
    stop: StopProgress | None
    now: float
    addresses: tuple[GuestAddress, ...] = ()
    """Addresses learned for the running guest's NICs (leases, guest agent)."""
    address_polls: int = 0
    """How many address looks in a row found a NIC without one: the next look waits longer."""
