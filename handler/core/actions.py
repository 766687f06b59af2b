"""The steps a plan asks the shell to take, in order. Each is a small immutable value."""

from __future__ import annotations

from dataclasses import dataclass

from handler.core.status import VMIStatus


@dataclass(frozen=True, slots=True)
class ClaimVMI:
    """Take ownership before creating anything, so the VMI cannot vanish with a domain left
    behind (in Kubernetes: add the agent's finalizer). Always precedes DefineDomain."""


@dataclass(frozen=True, slots=True)
class DefineDomain:
    name: str
    xml: str


@dataclass(frozen=True, slots=True)
class StartDomain:
    name: str


@dataclass(frozen=True, slots=True)
class RequestShutdown:
    """An ACPI power-button press; ``attempt`` counts presses for this stop."""

    name: str
    attempt: int
    grace_seconds: float
    """The destroy is due this long after the first press: the shell arms a timer for it, so
    the destroy goes out at its deadline without waiting for a reconcile pass."""


@dataclass(frozen=True, slots=True)
class DestroyDomain:
    """Pull the plug: graceful destroy first, then forced. The shell issues it off the reconcile
    workers, so guests reaching their grace limit together are destroyed together."""

    name: str
    after_seconds: float
    """Seconds since the first ACPI press (the grace actually given)."""
    deadline: float
    """The clock reading at which the grace ran out, to report how late the destroy went out."""
    repeats: float | None = None
    """When the destroy this one repeats was issued (None: the first). The shell drops it if
    another went out since, from the deadline timer: one destroy per decision."""


@dataclass(frozen=True, slots=True)
class UndefineDomain:
    name: str


@dataclass(frozen=True, slots=True)
class WriteStatus:
    status: VMIStatus


@dataclass(frozen=True, slots=True)
class RecordEvent:
    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True, slots=True)
class ForgetVMI:
    """The VMI is gone and its domain undefined: drop its status (and, in Kubernetes, the finalizer)."""


Action = (
    ClaimVMI
    | DefineDomain
    | StartDomain
    | RequestShutdown
    | DestroyDomain
    | UndefineDomain
    | WriteStatus
    | RecordEvent
    | ForgetVMI
)
