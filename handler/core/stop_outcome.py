"""How a stopped guest ended, as KubeVirt reports it: Succeeded if it powered itself off,
Failed (with a reason) if it crashed or had to be destroyed."""

from __future__ import annotations

from handler.core.actions import RecordEvent
from handler.core.desired import StopProgress
from handler.core.domain_state import ObservedDomain, StopCause
from handler.core.status import Phase, VMIStatus, ready

AGENT_STOPPED = "AgentStopped"

_FAILURES = {
    StopCause.DESTROYED: ("Destroyed", "the domain was destroyed outside qat-handler"),
    StopCause.CRASHED: ("Crashed", "the guest crashed"),
    StopCause.FAILED: ("Failed", "the domain failed to run"),
    StopCause.OTHER: ("StoppedUnexpectedly", "the domain stopped for an unknown reason"),
}


def final_status(
    domain: ObservedDomain,
    last: VMIStatus | None,
    progress: StopProgress | None,
    grace: int,
) -> tuple[VMIStatus, RecordEvent | None]:
    """The terminal status of an inactive domain, and the Event that announces it."""
    assert domain.identity is not None
    devices, digest = domain.identity.devices, domain.identity.digest
    if progress is not None and progress.destroyed_after is not None:
        waited = progress.destroyed_after
        message = (
            "destroyed at once: its grace period is 0 s"
            if grace <= 0
            else f"destroyed after {waited:.0f} s: the guest did not power off within its {grace} s grace period"
        )
        status = VMIStatus(
            Phase.FAILED,
            domain.name,
            (ready(False, "Destroyed", message),),
            devices,
            reason="Destroyed",
            spec_digest=digest,
        )
        return status, RecordEvent("Destroyed", f"{domain.name} {message}", warning=True)
    if domain.stop_cause is StopCause.GUEST_POWEROFF:
        message = "the guest powered itself off"
        if progress is not None:
            message += f" after {progress.requests} ACPI request(s)"
        status = VMIStatus(
            Phase.SUCCEEDED, domain.name, (ready(False, "Stopped", message),), devices, spec_digest=digest
        )
        return status, RecordEvent("Stopped", f"{domain.name}: {message}")
    if domain.stop_cause is StopCause.NEVER_STARTED:
        if last is not None and last.phase.terminal:
            return last, None
        message = "stopped before the guest was started"
        if last is not None and last.phase is Phase.RUNNING:
            # libvirtd restarted after the guest stopped and no longer knows why: not the guest's fault.
            message = "the guest stopped while libvirtd was restarting; libvirt no longer knows why"
        status = VMIStatus(
            Phase.SUCCEEDED, domain.name, (ready(False, "Stopped", message),), devices, spec_digest=digest
        )
        return status, RecordEvent("Stopped", f"{domain.name}: {message}")
    reason, message = _FAILURES[domain.stop_cause or StopCause.OTHER]
    status = VMIStatus(
        Phase.FAILED, domain.name, (ready(False, reason, message),), devices, reason=reason, spec_digest=digest
    )
    return status, RecordEvent(reason, f"{domain.name}: {message}", warning=True)
