"""The agent's decisions: ``plan(desired, observed) -> actions``, pure and level-triggered.

The shell gathers a Desired (from manifests or the API) and an Observed (from libvirt and
its own memory), calls plan(), and executes the actions in order. Running it again on
the same inputs asks for the same thing, so a missed event is healed by the next pass.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from handler.core.actions import (
    Action,
    ClaimVMI,
    DefineDomain,
    DestroyDomain,
    ForgetVMI,
    RecordEvent,
    RequestShutdown,
    StartDomain,
    UndefineDomain,
    WriteStatus,
)
from handler.core.backoff import Backoff
from handler.core.desired import Desired, Intent, Observed, StopProgress
from handler.core.domain_state import ObservedDomain, StopCause
from handler.core.domain_xml import desired_digest, render_domain
from handler.core.interface_status import interface_statuses, missing_address
from handler.core.numa import CONDITION as NUMA_CONDITION
from handler.core.numa import NumaPolicy, NumaTopology, Placement, place
from handler.core.refusal import Refusal
from handler.core.render_settings import RenderSettings
from handler.core.status import Condition, Phase, VMIStatus, ready, synchronized
from handler.core.stop_outcome import AGENT_STOPPED, final_status
from handler.core.stop_progress import DEADLINE_TICK
from handler.core.sync_failure import sync_failed
from handler.core.vmi import VMI

DESTROY_RECHECK_SECONDS = 30.0
"""A destroy that has not come back by then is issued again (libvirt's own gives up after ~15 s)."""
DESTROY_RETRY = Backoff(1.0, 30.0)
"""Between destroys that failed."""
_NOTHING: tuple[Action, ...] = ()


@dataclass(frozen=True, slots=True)
class PlanSettings:
    render: RenderSettings
    acpi_resend_seconds: float = 3.0
    """How often the power button is pressed again: a booting guest can miss the first press."""
    numa_policy: NumaPolicy = NumaPolicy.NONE
    numa_topology: NumaTopology | None = None
    """The host's NUMA nodes and the node of each candidate VF, read at start; None: not known."""
    address_poll_seconds: float = 5.0
    """While a running guest's NIC has no address yet, look again after this long, doubling on
    each look up to ``address_poll_max_seconds`` (a guest that never asks for a lease costs little)."""
    address_poll_max_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    requeue_after: float | None = None
    """Seconds until the VMI must be looked at again even if nothing happens."""


def plan(desired: Desired, observed: Observed, settings: PlanSettings) -> Plan:
    domain = observed.domain
    if domain is not None and (domain.identity is None or not domain.identity.owned_by(settings.render.owner)):
        return _foreign_domain(desired, observed, domain)
    if desired.intent is Intent.RUN:
        if desired.vmi is None or desired.blocked is not None:
            return _blocked(desired, observed)
        return _run(desired.vmi, desired, observed, settings)
    return _stop(desired, observed, settings)


def _run(vmi: VMI, desired: Desired, observed: Observed, settings: PlanSettings) -> Plan:
    domain, last = observed.domain, observed.status
    placement = place(vmi, desired.devices, settings.numa_topology, settings.numa_policy)
    if isinstance(placement, Refusal):
        if domain is None or not domain.active:
            return _blocked(replace(desired, blocked=placement), observed)
        placement = Placement()  # a running guest is never stopped for a refusal
    digest = desired_digest(vmi, desired.devices, settings.render, placement)
    conditions: tuple[Condition, ...] = (ready(True), synchronized(True))
    if placement.note is not None:
        conditions += (Condition(NUMA_CONDITION, *placement.note),)
    interfaces = interface_statuses(vmi, observed.addresses)
    running = VMIStatus(
        Phase.RUNNING, vmi.domain_name, conditions, desired.devices, spec_digest=digest, interfaces=interfaces
    )
    poll = _address_poll(settings, observed.address_polls) if missing_address(interfaces) else None
    if domain is None:
        if last is not None and last.phase.terminal and last.spec_digest == digest:
            return Plan(())
        xml = render_domain(vmi, desired.devices, settings.render, desired.attachments, placement)
        return Plan(
            (
                ClaimVMI(),
                DefineDomain(vmi.domain_name, xml),
                RecordEvent("Created", f"defined domain {vmi.domain_name}{_device_note(desired)}"),
                StartDomain(vmi.domain_name),
                *_transition(
                    last, running, RecordEvent("Started", f"started domain {vmi.domain_name}{_device_note(desired)}")
                ),
            ),
            requeue_after=poll,
        )
    assert domain.identity is not None
    stale = domain.identity.digest != digest
    if domain.active:
        status = replace(running, devices=domain.identity.devices, spec_digest=domain.identity.digest)
        if stale:
            status = status.with_condition(
                Condition(
                    "RestartRequired",
                    True,
                    "SpecChanged",
                    "the VMI changed while its guest runs; the change applies when the guest is next started",
                )
            )
        return Plan(_transition(last, status, _restart_event(last, status)), requeue_after=poll)
    if _never_started(domain, last) or stale or _halted_by_agent(last) or _start_failed(domain, last):
        xml = render_domain(vmi, desired.devices, settings.render, desired.attachments, placement) if stale else ""
        define: tuple[Action, ...] = (ClaimVMI(), DefineDomain(vmi.domain_name, xml)) if stale else ()
        started = RecordEvent("Started", f"started domain {vmi.domain_name}{_device_note(desired)}")
        return Plan((*define, StartDomain(vmi.domain_name), *_transition(last, running, started)), requeue_after=poll)
    final, event = final_status(domain, last, None, domain.identity.grace_seconds)
    return Plan(_transition(last, final, event))


def _stop(desired: Desired, observed: Observed, settings: PlanSettings) -> Plan:
    domain, last, progress = observed.domain, observed.status, observed.stop
    if domain is None:
        if desired.intent is Intent.REMOVE:
            return Plan((ForgetVMI(),))
        return Plan(_never_ran(desired, last))
    assert domain.identity is not None
    grace = desired.vmi.grace_seconds if desired.vmi is not None else domain.identity.grace_seconds
    if domain.active:
        return _press_or_pull(domain, last, progress, grace, observed.now, settings.acpi_resend_seconds)
    final, event = final_status(domain, last, progress, grace)
    if desired.intent is Intent.HALT:
        note = Condition("Ready", False, AGENT_STOPPED, "the agent stopped the guest; it starts again with the agent")
        final = final.with_condition(note)
    actions: list[Action] = list(_transition(last, final, event))
    if desired.intent is not Intent.HALT:
        actions.append(UndefineDomain(domain.name))
    if desired.intent is Intent.REMOVE:
        actions.append(ForgetVMI())
    return Plan(tuple(actions))


def _press_or_pull(
    domain: ObservedDomain,
    last: VMIStatus | None,
    progress: StopProgress | None,
    grace: int,
    now: float,
    resend: float,
) -> Plan:
    if progress is None:
        if grace <= 0:
            return _pull(domain, last, None, grace, now)
        status = _shutting_down(domain, last, grace)
        event = RecordEvent("ShuttingDown", f"sent ACPI shutdown to {domain.name}; destroy after {grace} s")
        return Plan(
            (RequestShutdown(domain.name, 1, float(grace)), *_transition(last, status, event)),
            requeue_after=min(resend, float(grace)),
        )
    remaining = grace - (now - progress.started_at)
    if remaining < DEADLINE_TICK or progress.destroy_issued_at is not None:
        return _pull(domain, last, progress, grace, now)
    since_press = now - progress.last_request_at
    if since_press >= resend:
        press = RequestShutdown(domain.name, progress.requests + 1, float(grace))
        return Plan((press,), requeue_after=min(resend, remaining))
    return Plan((), requeue_after=min(resend - since_press, remaining))


def _pull(
    domain: ObservedDomain, last: VMIStatus | None, progress: StopProgress | None, grace: int, now: float
) -> Plan:
    """At the grace limit: issue the destroy once, then wait for it. A failed one is reported and
    retried with backoff; one that never came back is issued again after DESTROY_RECHECK_SECONDS."""
    started = progress.started_at if progress is not None else now
    repeats = progress.destroy_issued_at if progress is not None else None
    pull = DestroyDomain(domain.name, now - started, started + max(grace, 0), repeats)
    if progress is None or progress.destroy_issued_at is None:
        return Plan((pull,), requeue_after=DESTROY_RECHECK_SECONDS)
    wait, report = DESTROY_RECHECK_SECONDS, _NOTHING
    if progress.destroy_error is not None:
        wait = DESTROY_RETRY.delay(progress.destroy_failures)
        report = sync_failed(last, domain.name, *progress.destroy_error)
    waited = now - progress.destroy_issued_at
    if waited < wait:
        return Plan(report, requeue_after=wait - waited)
    return Plan((*report, pull), requeue_after=DESTROY_RECHECK_SECONDS)


def _shutting_down(domain: ObservedDomain, last: VMIStatus | None, grace: int) -> VMIStatus:
    assert domain.identity is not None
    base = last or VMIStatus(Phase.RUNNING, domain.name, devices=domain.identity.devices)
    message = f"ACPI power button pressed; the guest is destroyed if still running after {grace} s"
    return base.with_condition(Condition("Ready", False, "ShuttingDown", message))


def _never_ran(desired: Desired, last: VMIStatus | None) -> tuple[Action, ...]:
    if last is not None and last.phase.terminal:
        return ()
    name = desired.domain_name
    status = VMIStatus(
        Phase.SUCCEEDED,
        name,
        (ready(False, "Stopped", "stopped before the guest was started"),),
        spec_digest=last.spec_digest if last else "",
    )
    return _transition(last, status, RecordEvent("Stopped", f"{desired.key} stopped before its guest started"))


WAITING_FOR_LAUNCHER = "WaitingForLauncher"
LAUNCHER_WAIT_NEWS = "waiting for the device handoff from the VMI's launcher pod"


def _blocked(desired: Desired, observed: Observed) -> Plan:
    refusal = desired.blocked
    domain, last = observed.domain, observed.status
    finished = domain is None and last is not None and last.phase.terminal
    waiting = refusal is not None and refusal.reason == WAITING_FOR_LAUNCHER
    if waiting and (finished or (domain is not None and domain.active)):
        # The handoff matters only until the guest starts. A guest that is done and its pod gone is
        # how every VMI's life ends: final stays final. A running guest keeps its VFs, and if its pod
        # vanished, the controller's verdict (PodDisappeared) is what stops it, not this.
        return Plan(())
    reason = refusal.reason if refusal else "Unknown"
    message = refusal.line() if refusal else "the VMI could not be read"
    if domain is not None and domain.identity is not None:
        if domain.active:
            base = VMIStatus(
                Phase.RUNNING, domain.name, (ready(True),), domain.identity.devices, spec_digest=domain.identity.digest
            )
        else:
            base, _ = final_status(domain, last, None, domain.identity.grace_seconds)
    else:
        name = desired.domain_name
        base = VMIStatus(Phase.SCHEDULED, name, (ready(False, reason, "the guest cannot start yet"),))
    status = base.with_condition(synchronized(False, reason, message))
    # Every start waits a moment for its launcher: that is news, not a warning (the condition
    # keeps the fix, for a wait that does not end).
    event = RecordEvent(reason, LAUNCHER_WAIT_NEWS, warning=False) if waiting else RecordEvent(reason, message, True)
    return Plan(_transition(last, status, event))


def _foreign_domain(desired: Desired, observed: Observed, domain: ObservedDomain) -> Plan:
    """A domain with our name that we did not create: never touch it, and say so."""
    if desired.intent is Intent.REMOVE:
        return Plan((ForgetVMI(),))
    owner = domain.identity.owner if domain.identity else ""
    managed_by = f"another qat-handler ({owner})" if owner else "something other than qat-handler"
    message = f"domain {domain.name} exists and is managed by {managed_by}; fix: rename the VMI or remove that domain"
    status = VMIStatus(Phase.SCHEDULED, domain.name, (ready(False), synchronized(False, "DomainNameTaken", message)))
    return Plan(_transition(observed.status, status, RecordEvent("DomainNameTaken", message, warning=True)))


def _address_poll(settings: PlanSettings, polls: int) -> float:
    return min(settings.address_poll_seconds * (1 << min(polls, 16)), settings.address_poll_max_seconds)


def _transition(last: VMIStatus | None, new: VMIStatus, event: RecordEvent | None) -> tuple[Action, ...]:
    """Write the status and emit the event only when something actually changed."""
    if last == new:
        return ()
    if event is None or _same_story(last, new):
        return (WriteStatus(new),)
    return (WriteStatus(new), event)


def _same_story(last: VMIStatus | None, new: VMIStatus) -> bool:
    """True when only details changed: the phase and every condition reason are as before."""
    if last is None or last.phase != new.phase:
        return False
    return {(c.type, c.status, c.reason) for c in last.conditions} == {
        (c.type, c.status, c.reason) for c in new.conditions
    }


def _restart_event(last: VMIStatus | None, status: VMIStatus) -> RecordEvent | None:
    if status.condition("RestartRequired") and not (last and last.condition("RestartRequired")):
        return RecordEvent("RestartRequired", "the VMI changed while its guest runs; restart the guest to apply it")
    return RecordEvent("Started", f"domain {status.domain} is running")


def _start_failed(domain: ObservedDomain, last: VMIStatus | None) -> bool:
    """libvirt leaves a domain whose start failed SHUTOFF with reason FAILED. If this agent never
    saw it running, the guest never ran: keep retrying the start (with backoff, reporting
    Synchronized=False) rather than calling the VMI Failed."""
    return domain.stop_cause is StopCause.FAILED and (last is None or last.phase is Phase.SCHEDULED)


def _never_started(domain: ObservedDomain, last: VMIStatus | None) -> bool:
    """libvirt reports "unknown" both for a domain never started and, after libvirtd restarts, for
    any inactive one: a guest the agent saw running or finished stays off."""
    seen_run = last is not None and (last.phase.terminal or last.phase is Phase.RUNNING)
    return domain.stop_cause is StopCause.NEVER_STARTED and not seen_run


def _halted_by_agent(last: VMIStatus | None) -> bool:
    condition = last.condition("Ready") if last else None
    return condition is not None and condition.reason == AGENT_STOPPED


def _device_note(desired: Desired) -> str:
    if not desired.devices:
        return ""
    return " with QAT " + ", ".join(str(device.bdf) for device in desired.devices)
