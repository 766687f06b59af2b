"""The pure planner, branch by branch, with hand-built Desired/Observed and a fake ``now``.

Nothing here touches libvirt: each test states what the world looks like and checks the
exact actions asked for. Where a status is written, planning again with that status is
checked to ask for nothing more (the planner is level-triggered and must settle).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from handler.core.actions import (
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
from handler.core.bdf import Bdf
from handler.core.desired import Desired, Intent, Observed, StopProgress
from handler.core.device_env import AssignedDevice
from handler.core.domain_identity import read_identity
from handler.core.domain_state import ObservedDomain, Power, StopCause
from handler.core.domain_xml import desired_digest, identity_of
from handler.core.planner import DESTROY_RECHECK_SECONDS, LAUNCHER_WAIT_NEWS, Plan, PlanSettings, plan
from handler.core.refusal import Refusal
from handler.core.render_settings import RenderSettings
from handler.core.status import Condition, Phase, VMIStatus, ready, synchronized
from handler.core.sync_failure import sync_failed
from handler.core.vmi import VMI
from handler.host.domain_templates import load_templates

KEY = "ns/vm"
NAME = "ns_vm"
UID = "6a1f0c9e-0001-4d6b-9e51-000000000001"
NOW = 1000.0
GRACE = 30
RESEND = 3.0
SETTINGS = PlanSettings(
    render=RenderSettings(domain_type="qemu", log_dir="/logs", templates=load_templates()), acpi_resend_seconds=RESEND
)
DEVICES = (AssignedDevice("qat0", "qat.intel.com/generic", Bdf(0, 0x3D, 1, 1), "QAT0..QATn"),)
REFUSAL = Refusal("DeviceEnvInvalid", "QAT0", "'zz' is not a PCI address", "use the form 0000:3d:01.1")


def make_vmi(cores: int = 1, grace: int = GRACE, spec: str = "a" * 16) -> VMI:
    return VMI(
        namespace="ns",
        name="vm",
        uid=UID,
        generation=1,
        labels=(),
        deletion_requested=False,
        cores=cores,
        memory_bytes=2**30,
        devices=(),
        kernel_boot=None,
        disks=(),
        grace_seconds=grace,
        spec_digest=spec,
    )


VMI_ = make_vmi()
DIGEST = desired_digest(VMI_, DEVICES, SETTINGS.render)


def run_desired(vmi: VMI = VMI_, devices: tuple[AssignedDevice, ...] = DEVICES) -> Desired:
    return Desired(KEY, Intent.RUN, vmi, devices)


def domain(
    power: Power = Power.RUNNING,
    cause: StopCause | None = None,
    vmi: VMI = VMI_,
    devices: tuple[AssignedDevice, ...] = DEVICES,
    foreign: bool = False,
) -> ObservedDomain:
    identity = None if foreign else identity_of(vmi, devices, SETTINGS.render)
    return ObservedDomain(NAME, UID, power, cause, identity)


def observed(
    dom: ObservedDomain | None = None,
    status: VMIStatus | None = None,
    stop: StopProgress | None = None,
    now: float = NOW,
) -> Observed:
    return Observed(dom, status, stop, now)


def running_status(devices: tuple[AssignedDevice, ...] = DEVICES, digest: str = DIGEST) -> VMIStatus:
    return VMIStatus(Phase.RUNNING, NAME, (ready(True), synchronized(True)), devices, spec_digest=digest)


def written(result: Plan) -> VMIStatus:
    statuses = [a.status for a in result.actions if isinstance(a, WriteStatus)]
    assert len(statuses) == 1, result.actions
    return statuses[0]


def events(result: Plan) -> list[RecordEvent]:
    return [a for a in result.actions if isinstance(a, RecordEvent)]


def kinds(result: Plan) -> list[str]:
    return [type(a).__name__ for a in result.actions]


def assert_settles(desired: Desired, obs: Observed, result: Plan) -> None:
    """Planning again with the status just written asks for nothing."""
    again = plan(desired, replace(obs, status=written(result)), SETTINGS)
    assert again.actions == ()


# -- RUN ------------------------------------------------------------------------------------


def test_new_vmi_is_defined_started_and_reported_running() -> None:
    result = plan(run_desired(), observed(), SETTINGS)
    assert kinds(result) == ["ClaimVMI", "DefineDomain", "RecordEvent", "StartDomain", "WriteStatus", "RecordEvent"]
    claim, define, created, start, status, started = result.actions
    assert claim == ClaimVMI()
    assert isinstance(define, DefineDomain) and define.name == NAME
    identity = read_identity(define.xml)
    assert identity is not None and identity.digest == DIGEST and identity.devices == DEVICES
    assert created == RecordEvent("Created", "defined domain ns_vm with QAT 0000:3d:01.1")
    assert start == StartDomain(NAME)
    assert status == WriteStatus(running_status())
    assert started == RecordEvent("Started", "started domain ns_vm with QAT 0000:3d:01.1")
    assert result.requeue_after is None


def test_running_and_up_to_date_asks_for_nothing() -> None:
    result = plan(run_desired(), observed(domain(), running_status()), SETTINGS)
    assert result == Plan(())


def test_running_domain_without_status_only_reports() -> None:
    """An adopted running domain (the agent restarted) is reported, never redefined or restarted."""
    obs = observed(domain())
    result = plan(run_desired(), obs, SETTINGS)
    assert kinds(result) == ["WriteStatus", "RecordEvent"]
    assert written(result) == running_status()
    assert events(result) == [RecordEvent("Started", "domain ns_vm is running")]
    assert_settles(run_desired(), obs, result)


def test_running_with_a_stale_digest_asks_for_a_restart_but_never_redefines() -> None:
    changed = make_vmi(cores=4, spec="b" * 16)
    desired = run_desired(changed)
    obs = observed(domain(), running_status())
    result = plan(desired, obs, SETTINGS)
    assert kinds(result) == ["WriteStatus", "RecordEvent"]
    status = written(result)
    assert status.phase is Phase.RUNNING
    condition = status.condition("RestartRequired")
    assert condition is not None and condition.status and condition.reason == "SpecChanged"
    assert status.spec_digest == DIGEST, "the status describes the domain that runs, not the new spec"
    assert events(result)[0].reason == "RestartRequired"
    assert_settles(desired, obs, result)


def test_running_with_changed_devices_is_stale_too() -> None:
    other = (replace(DEVICES[0], bdf=Bdf(0, 0x3D, 1, 2)),)
    result = plan(run_desired(devices=other), observed(domain(), running_status()), SETTINGS)
    assert written(result).condition("RestartRequired") is not None
    assert written(result).devices == DEVICES, "the devices reported are those the guest has"


def test_inactive_never_started_domain_is_started() -> None:
    obs = observed(domain(Power.SHUTOFF, StopCause.NEVER_STARTED))
    result = plan(run_desired(), obs, SETTINGS)
    assert kinds(result) == ["StartDomain", "WriteStatus", "RecordEvent"]
    assert result.actions[0] == StartDomain(NAME)
    assert written(result) == running_status()


def test_guest_poweroff_is_succeeded_and_sticky() -> None:
    obs = observed(domain(Power.SHUTOFF, StopCause.GUEST_POWEROFF), running_status())
    result = plan(run_desired(), obs, SETTINGS)
    assert kinds(result) == ["WriteStatus", "RecordEvent"]
    status = written(result)
    assert status.phase is Phase.SUCCEEDED
    assert status.condition("Ready") == Condition("Ready", False, "Stopped", "the guest powered itself off")
    assert events(result) == [RecordEvent("Stopped", "ns_vm: the guest powered itself off")]
    assert_settles(run_desired(), obs, result)


@pytest.mark.parametrize(
    ("power", "cause", "reason"),
    [
        (Power.CRASHED, StopCause.CRASHED, "Crashed"),
        (Power.SHUTOFF, StopCause.CRASHED, "Crashed"),
        (Power.SHUTOFF, StopCause.DESTROYED, "Destroyed"),
        (Power.SHUTOFF, StopCause.FAILED, "Failed"),
        (Power.SHUTOFF, StopCause.OTHER, "StoppedUnexpectedly"),
    ],
)
def test_inactive_after_a_failure_is_failed_with_reason(power: Power, cause: StopCause, reason: str) -> None:
    obs = observed(domain(power, cause), running_status())
    result = plan(run_desired(), obs, SETTINGS)
    status = written(result)
    assert (status.phase, status.reason) == (Phase.FAILED, reason)
    assert events(result)[0].reason == reason and events(result)[0].warning
    assert not any(isinstance(a, StartDomain) for a in result.actions), "a failed guest is not restarted"
    assert_settles(run_desired(), obs, result)


def test_stale_inactive_domain_is_redefined_and_started() -> None:
    changed = make_vmi(cores=2, spec="b" * 16)
    off = domain(Power.SHUTOFF, StopCause.GUEST_POWEROFF)
    succeeded = written(plan(run_desired(), observed(off, running_status()), SETTINGS))
    obs = observed(off, succeeded)
    result = plan(run_desired(changed), obs, SETTINGS)
    assert kinds(result) == ["ClaimVMI", "DefineDomain", "StartDomain", "WriteStatus", "RecordEvent"]
    define = result.actions[1]
    assert isinstance(define, DefineDomain) and '<vcpu placement="static">2</vcpu>' in define.xml
    new_digest = desired_digest(changed, DEVICES, SETTINGS.render)
    assert written(result).spec_digest == new_digest != DIGEST


def test_a_spec_change_is_seen_through_the_spec_digest_only() -> None:
    """The planner compares digests: the same spec digest with other fields is not a change."""
    result = plan(run_desired(make_vmi(cores=8)), observed(domain(), running_status()), SETTINGS)
    assert result.actions == ()


def test_terminal_status_with_same_digest_and_no_domain_is_left_alone() -> None:
    succeeded = VMIStatus(Phase.SUCCEEDED, NAME, (ready(False, "Stopped", "x"),), DEVICES, spec_digest=DIGEST)
    assert plan(run_desired(), observed(None, succeeded), SETTINGS) == Plan(())


def test_terminal_status_for_another_spec_and_no_domain_starts_again() -> None:
    succeeded = VMIStatus(Phase.SUCCEEDED, NAME, (), DEVICES, spec_digest="old")
    assert kinds(plan(run_desired(), observed(None, succeeded), SETTINGS))[:4] == [
        "ClaimVMI",
        "DefineDomain",
        "RecordEvent",
        "StartDomain",
    ]


# -- blocked --------------------------------------------------------------------------------


@pytest.mark.parametrize("vmi", [VMI_, None], ids=["vmi-read", "vmi-unreadable"])
def test_blocked_without_domain_is_scheduled_with_the_refusal_once(vmi: VMI | None) -> None:
    desired = Desired(KEY, Intent.RUN, vmi, blocked=REFUSAL)
    obs = observed()
    result = plan(desired, obs, SETTINGS)
    assert kinds(result) == ["WriteStatus", "RecordEvent"]
    status = written(result)
    assert status.phase is Phase.SCHEDULED and status.domain == NAME
    assert status.condition("Ready") == Condition("Ready", False, "DeviceEnvInvalid", "the guest cannot start yet")
    assert status.condition("Synchronized") == Condition("Synchronized", False, "DeviceEnvInvalid", REFUSAL.line())
    assert events(result) == [RecordEvent("DeviceEnvInvalid", REFUSAL.line(), warning=True)]
    assert_settles(desired, obs, result)


def test_blocked_while_running_keeps_the_guest_running() -> None:
    desired = Desired(KEY, Intent.RUN, VMI_, DEVICES, blocked=REFUSAL)
    result = plan(desired, observed(domain(), running_status()), SETTINGS)
    assert kinds(result) == ["WriteStatus", "RecordEvent"]
    status = written(result)
    assert status.phase is Phase.RUNNING and status.devices == DEVICES
    assert status.condition("Ready") == ready(True)
    assert status.condition("Synchronized") == synchronized(False, "DeviceEnvInvalid", REFUSAL.line())


def test_blocked_then_fixed_starts_and_clears_the_condition() -> None:
    blocked = plan(Desired(KEY, Intent.RUN, VMI_, blocked=REFUSAL), observed(), SETTINGS)
    result = plan(run_desired(), observed(None, written(blocked)), SETTINGS)
    assert "StartDomain" in kinds(result)
    assert written(result).condition("Synchronized") == synchronized(True)


# -- a domain that is not ours ----------------------------------------------------------------


def test_foreign_domain_with_our_name_is_never_touched() -> None:
    obs = observed(domain(foreign=True))
    result = plan(run_desired(), obs, SETTINGS)
    assert kinds(result) == ["WriteStatus", "RecordEvent"]
    status = written(result)
    sync = status.condition("Synchronized")
    assert (
        sync is not None
        and sync.reason == "DomainNameTaken"
        and "managed by something other than qat-handler" in sync.message
    )
    assert events(result)[0].warning
    assert_settles(run_desired(), obs, result)


@pytest.mark.parametrize("intent", [Intent.REMOVE, Intent.STOP, Intent.HALT])
def test_foreign_domain_is_not_stopped_either(intent: Intent) -> None:
    result = plan(Desired(KEY, intent, VMI_, DEVICES), observed(domain(foreign=True)), SETTINGS)
    touching = (DefineDomain, StartDomain, RequestShutdown, DestroyDomain, UndefineDomain)
    assert not any(isinstance(a, touching) for a in result.actions)
    if intent is Intent.REMOVE:
        assert result.actions == (ForgetVMI(),)


# -- stopping: REMOVE -------------------------------------------------------------------------


def remove() -> Desired:
    return Desired(KEY, Intent.REMOVE, None)


def test_remove_of_a_running_guest_presses_the_power_button() -> None:
    result = plan(remove(), observed(domain(), running_status()), SETTINGS)
    assert kinds(result) == ["RequestShutdown", "WriteStatus", "RecordEvent"]
    assert result.actions[0] == RequestShutdown(NAME, 1, float(GRACE)), "the press carries the grace the timer arms"
    status = written(result)
    assert status.phase is Phase.RUNNING
    condition = status.condition("Ready")
    assert condition is not None and condition.reason == "ShuttingDown" and f"{GRACE} s" in condition.message
    assert events(result)[0].reason == "ShuttingDown"
    assert result.requeue_after is not None and 0 < result.requeue_after <= RESEND


def in_stop(started: float = NOW, last: float = NOW, presses: int = 1, destroyed: float | None = None) -> StopProgress:
    return StopProgress(started_at=started, last_request_at=last, requests=presses, destroyed_after=destroyed)


def test_power_button_is_not_pressed_again_before_the_resend_interval() -> None:
    result = plan(remove(), observed(domain(), None, in_stop(), NOW + 1.0), SETTINGS)
    assert result.actions == ()
    assert result.requeue_after == pytest.approx(RESEND - 1.0)


def test_power_button_is_pressed_again_after_the_resend_interval() -> None:
    result = plan(remove(), observed(domain(), None, in_stop(presses=2, last=NOW + 3), NOW + 3 + RESEND), SETTINGS)
    assert result.actions == (RequestShutdown(NAME, 3, float(GRACE)),)
    assert result.requeue_after is not None and result.requeue_after <= RESEND


def test_no_destroy_just_before_the_grace_period_ends() -> None:
    result = plan(remove(), observed(domain(), None, in_stop(last=NOW + GRACE - 1), NOW + GRACE - 0.01), SETTINGS)
    assert not any(isinstance(a, DestroyDomain) for a in result.actions)
    assert result.requeue_after == pytest.approx(0.01)


def test_destroy_when_the_grace_period_is_over() -> None:
    result = plan(remove(), observed(domain(), None, in_stop(last=NOW + GRACE - 1), NOW + GRACE), SETTINGS)
    assert result.actions == (DestroyDomain(NAME, float(GRACE), deadline=NOW + GRACE),)
    assert result.requeue_after == DESTROY_RECHECK_SECONDS


def issued(at: float, failures: int = 0, error: tuple[str, str] | None = None) -> StopProgress:
    return replace(in_stop(last=NOW + GRACE - 1), destroyed_after=float(GRACE), destroy_issued_at=at,
                   destroy_failures=failures, destroy_error=error)  # fmt: skip


def test_an_issued_destroy_is_waited_for_not_issued_again() -> None:
    """The destroy runs off the reconcile workers: passes while it runs change nothing."""
    for later in (0.0, 1.0, DESTROY_RECHECK_SECONDS - 0.5):
        result = plan(remove(), observed(domain(), None, issued(NOW + GRACE), NOW + GRACE + later), SETTINGS)
        assert result.actions == ()
        assert result.requeue_after == pytest.approx(DESTROY_RECHECK_SECONDS - later)


def test_a_destroy_that_never_came_back_is_issued_again() -> None:
    now = NOW + GRACE + DESTROY_RECHECK_SECONDS
    result = plan(remove(), observed(domain(), None, issued(NOW + GRACE), now), SETTINGS)
    assert result.actions == (DestroyDomain(NAME, now - NOW, deadline=NOW + GRACE, repeats=NOW + GRACE),), (
        "a repeat names the destroy it repeats, so the shell sends it once"
    )


def test_a_failed_destroy_is_reported_and_retried_with_backoff() -> None:
    error = ("LibvirtUnavailable", "destroy ns_vm: cannot reach libvirtd")
    soon = observed(domain(), running_status(), issued(NOW + GRACE, 2, error), NOW + GRACE + 1.5)
    result = plan(remove(), soon, SETTINGS)
    assert kinds(result) == ["WriteStatus", "RecordEvent"], "reported, not yet retried (2nd failure: 2 s)"
    sync = written(result).condition("Synchronized")
    assert sync is not None and (sync.status, sync.reason, sync.message) == (False, *error)
    assert result.requeue_after == pytest.approx(0.5)
    retry = plan(remove(), replace(soon, now=NOW + GRACE + 2.0), SETTINGS)
    assert [type(a) for a in retry.actions][-1] is DestroyDomain


def test_the_manifest_grace_wins_over_the_domain_metadata() -> None:
    desired = Desired(KEY, Intent.STOP, make_vmi(grace=5), DEVICES)
    result = plan(desired, observed(domain(), None, in_stop(last=NOW + 4), NOW + 5), SETTINGS)
    assert result.actions == (DestroyDomain(NAME, 5.0, deadline=NOW + 5),)


def test_grace_zero_destroys_at_once() -> None:
    zero = make_vmi(grace=0)
    result = plan(Desired(KEY, Intent.REMOVE, None), observed(domain(vmi=zero)), SETTINGS)
    assert result.actions == (DestroyDomain(NAME, 0.0, deadline=NOW),)
    after = observed(domain(Power.SHUTOFF, StopCause.DESTROYED, vmi=zero), None, in_stop(presses=0, destroyed=0.0))
    final = plan(remove(), after, SETTINGS)
    status = written(final)
    assert status.phase is Phase.FAILED and status.reason == "Destroyed"
    assert status.condition("Ready").message == "destroyed at once: its grace period is 0 s"  # type: ignore[union-attr]


def test_inactive_after_our_destroy_is_failed_undefined_and_forgotten() -> None:
    after = observed(domain(Power.SHUTOFF, StopCause.DESTROYED), running_status(), in_stop(destroyed=30.2))
    result = plan(remove(), after, SETTINGS)
    assert kinds(result) == ["WriteStatus", "RecordEvent", "UndefineDomain", "ForgetVMI"]
    status = written(result)
    assert (status.phase, status.reason) == (Phase.FAILED, "Destroyed")
    message = status.condition("Ready").message  # type: ignore[union-attr]
    assert message.startswith("destroyed after 30 s") and f"{GRACE} s grace period" in message
    assert events(result)[0] == RecordEvent("Destroyed", f"ns_vm {message}", warning=True)
    assert result.actions[2:] == (UndefineDomain(NAME), ForgetVMI())


def test_guest_poweroff_during_remove_is_succeeded_undefined_and_forgotten() -> None:
    after = observed(domain(Power.SHUTOFF, StopCause.GUEST_POWEROFF), running_status(), in_stop(presses=2))
    result = plan(remove(), after, SETTINGS)
    assert kinds(result) == ["WriteStatus", "RecordEvent", "UndefineDomain", "ForgetVMI"]
    status = written(result)
    assert status.phase is Phase.SUCCEEDED
    assert status.condition("Ready").message == "the guest powered itself off after 2 ACPI request(s)"  # type: ignore[union-attr]


def test_remove_with_no_domain_forgets_the_vmi() -> None:
    assert plan(remove(), observed(None, running_status()), SETTINGS).actions == (ForgetVMI(),)
    assert plan(remove(), observed(), SETTINGS).actions == (ForgetVMI(),)


# -- stopping: STOP and HALT -----------------------------------------------------------------


def test_stop_undefines_but_keeps_the_status() -> None:
    desired = Desired(KEY, Intent.STOP, VMI_, DEVICES)
    after = observed(domain(Power.SHUTOFF, StopCause.GUEST_POWEROFF), running_status(), in_stop())
    result = plan(desired, after, SETTINGS)
    assert kinds(result) == ["WriteStatus", "RecordEvent", "UndefineDomain"]
    assert written(result).phase is Phase.SUCCEEDED
    gone = plan(desired, observed(None, written(result)), SETTINGS)
    assert gone.actions == (), "the terminal status stays and nothing is forgotten"


def test_stop_of_a_vmi_that_never_ran_is_succeeded_once() -> None:
    desired = Desired(KEY, Intent.STOP, VMI_, DEVICES)
    result = plan(desired, observed(), SETTINGS)
    assert kinds(result) == ["WriteStatus", "RecordEvent"]
    assert written(result).phase is Phase.SUCCEEDED
    assert_settles(desired, observed(), result)


def test_halt_keeps_the_domain_and_run_starts_it_again() -> None:
    halt = Desired(KEY, Intent.HALT, VMI_, DEVICES)
    pressed = plan(halt, observed(domain(), running_status()), SETTINGS)
    assert pressed.actions[0] == RequestShutdown(NAME, 1, float(GRACE))
    off = domain(Power.SHUTOFF, StopCause.GUEST_POWEROFF)
    result = plan(halt, observed(off, written(pressed), in_stop()), SETTINGS)
    assert kinds(result) == ["WriteStatus", "RecordEvent"], "no UndefineDomain, no ForgetVMI"
    status = written(result)
    assert status.condition("Ready").reason == "AgentStopped"  # type: ignore[union-attr]
    back = plan(run_desired(), observed(off, status), SETTINGS)
    assert kinds(back) == ["StartDomain", "WriteStatus", "RecordEvent"]
    assert written(back) == running_status()


def test_guest_poweroff_without_halt_is_not_restarted() -> None:
    """The contrast to HALT: the same inactive domain without AgentStopped stays off."""
    off = domain(Power.SHUTOFF, StopCause.GUEST_POWEROFF)
    succeeded = written(plan(run_desired(), observed(off, running_status()), SETTINGS))
    assert plan(run_desired(), observed(off, succeeded), SETTINGS).actions == ()


# -- sync_failed ------------------------------------------------------------------------------


def test_sync_failed_reports_once_per_message() -> None:
    first = sync_failed(None, NAME, "SyncFailed", "define ns_vm: boom (libvirt error 1)")
    assert [type(a).__name__ for a in first] == ["WriteStatus", "RecordEvent"]
    status = first[0].status  # type: ignore[union-attr]
    assert status.phase is Phase.SCHEDULED
    assert status.condition("Synchronized") == synchronized(False, "SyncFailed", "define ns_vm: boom (libvirt error 1)")
    assert first[1] == RecordEvent("SyncFailed", "define ns_vm: boom (libvirt error 1)", warning=True)
    assert sync_failed(status, NAME, "SyncFailed", "define ns_vm: boom (libvirt error 1)") == ()
    other = sync_failed(status, NAME, "LibvirtUnavailable", "connect: refused")
    assert [type(a).__name__ for a in other] == ["WriteStatus", "RecordEvent"]


def test_sync_failed_keeps_the_phase_of_a_running_vmi() -> None:
    actions = sync_failed(running_status(), NAME, "SyncFailed", "start ns_vm: no")
    status = actions[0].status  # type: ignore[union-attr]
    assert status.phase is Phase.RUNNING and status.devices == DEVICES
    assert status.condition("Ready") == ready(True)
    assert status.condition("Synchronized") == synchronized(False, "SyncFailed", "start ns_vm: no")


def test_a_start_that_failed_is_retried_not_reported_failed() -> None:
    """libvirt leaves a domain whose start failed SHUTOFF/FAILED; the guest never ran, so the
    planner starts it again (the reconciler backs off) instead of declaring the VMI Failed."""
    scheduled = VMIStatus(Phase.SCHEDULED, NAME, (ready(False),))
    failed_start = domain(Power.SHUTOFF, StopCause.FAILED)
    result = plan(run_desired(), observed(failed_start, status=scheduled), SETTINGS)
    assert StartDomain(NAME) in result.actions
    running = replace(scheduled, phase=Phase.RUNNING)
    after_running = plan(run_desired(), observed(failed_start, status=running), SETTINGS)
    assert StartDomain(NAME) not in after_running.actions
    assert any(isinstance(a, WriteStatus) and a.status.phase is Phase.FAILED for a in after_running.actions)


def test_a_domain_owned_by_another_agent_is_never_touched() -> None:
    ours = PlanSettings(replace(SETTINGS.render, owner="state-dir/ours"), SETTINGS.acpi_resend_seconds)
    theirs = replace(SETTINGS.render, owner="state-dir/theirs")
    identity = identity_of(VMI_, DEVICES, theirs)
    other = ObservedDomain(NAME, UID, Power.RUNNING, None, identity)
    for intent in (Intent.RUN, Intent.REMOVE, Intent.HALT):
        result = plan(Desired(KEY, intent, VMI_, DEVICES), observed(other), ours)
        assert not [a for a in result.actions if type(a).__name__.endswith("Domain") or isinstance(a, RequestShutdown)]
    refusal = written(plan(run_desired(), observed(other), ours)).condition("Synchronized")
    assert refusal is not None and "another qat-handler (state-dir/theirs)" in refusal.message
    assert written(plan(run_desired(), observed(other), SETTINGS)).phase is Phase.RUNNING  # no owner set: one agent


def test_a_finished_vmi_whose_launcher_pod_is_gone_stays_finished() -> None:
    """Kubernetes: after the guest is off and kubelet removed the pod, the VMI waits for no launcher."""
    waiting = Refusal("WaitingForLauncher", "launcher handoff", "has not arrived from the VMI's pod yet", "check")
    done = VMIStatus(Phase.SUCCEEDED, NAME, (ready(False, "Stopped", "the guest powered off"),), spec_digest=DIGEST)
    desired = replace(run_desired(), blocked=waiting)
    assert plan(desired, observed(status=done), SETTINGS).actions == ()
    # Another refusal is still reported, and one before the guest ever ran still means Scheduled.
    other = Refusal("DeviceRejected", "0000:3d:01.0", "is not bound to vfio-pci", "bind it")
    assert written(plan(replace(run_desired(), blocked=other), observed(status=done), SETTINGS)).condition(
        "Synchronized"
    ) == synchronized(False, "DeviceRejected", other.line())
    assert written(plan(desired, observed(), SETTINGS)).phase is Phase.SCHEDULED


def test_waiting_for_the_launcher_is_news_before_the_start_and_nothing_after() -> None:
    """Every start waits a moment for its launcher's handoff: a Normal Event, not a Warning. Once
    the guest runs, a handoff that goes away (its pod force-deleted) changes nothing here: the
    guest keeps its VFs until the controller fails the VMI."""
    waiting = Refusal("WaitingForLauncher", "launcher handoff", "has not arrived from the VMI's pod yet", "check")
    desired = replace(run_desired(), blocked=waiting)
    before = plan(desired, observed(), SETTINGS)
    assert written(before).condition("Synchronized") == synchronized(False, "WaitingForLauncher", waiting.line())
    assert events(before) == [RecordEvent("WaitingForLauncher", LAUNCHER_WAIT_NEWS, warning=False)]
    assert plan(desired, observed(domain(), status=running_status()), SETTINGS).actions == ()
    # A stopped guest still ends the way it ended, and a real refusal is still a warning.
    stopped = plan(
        desired, observed(domain(Power.SHUTOFF, StopCause.GUEST_POWEROFF), status=running_status()), SETTINGS
    )
    assert written(stopped).phase is Phase.SUCCEEDED
    other = Refusal("DeviceRejected", "0000:3d:01.0", "is not bound to vfio-pci", "bind it")
    assert [e.warning for e in events(plan(replace(run_desired(), blocked=other), observed(), SETTINGS))] == [True]
