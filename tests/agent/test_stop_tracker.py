"""The stop tracker's deadline timer beside the reconcile pass, on a fake clock: the destroy at
the grace limit goes out once, from whichever decides first, and only on a guest still running."""

from __future__ import annotations

import threading

import structlog

from handler.agent.stop_tracker import StopTracker
from handler.core.desired import Intent
from handler.core.domain_state import ObservedDomain, Power, StopCause

KEY, NAME = "ns/vm", "ns_vm"
GRACE = 6.0
WAIT = 10.0  # real seconds, only ever waited out when the property is broken
LOG = structlog.get_logger("test")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Libvirt:
    """One domain; destroy returns at once and is recorded with the fake clock's reading."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.power = Power.RUNNING
        self.intent = Intent.REMOVE
        self.destroys: list[float] = []
        self.requeued: list[str] = []
        self._cond = threading.Condition()

    def observe(self, name: str) -> ObservedDomain | None:
        cause = StopCause.GUEST_POWEROFF if self.power is Power.SHUTOFF else None
        return ObservedDomain(name, "uuid", self.power, cause, None)

    def destroy(self, name: str) -> None:
        self.destroys.append(self.clock())

    def requeue(self, key: str) -> None:
        with self._cond:
            self.requeued.append(key)
            self._cond.notify_all()

    def wait_requeued(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.requeued) >= count, WAIT), self.requeued


def tracker() -> tuple[StopTracker, Libvirt, Clock]:
    clock = Clock()
    libvirt = Libvirt(clock)
    stops = StopTracker(
        libvirt.destroy, libvirt.requeue, clock, observe=libvirt.observe, intent=lambda _k: libvirt.intent
    )
    return stops, libvirt, clock


def settle() -> None:
    for thread in [t for t in threading.enumerate() if t.name.startswith("deadline-")]:
        thread.join(WAIT)


def test_the_timer_destroys_at_the_deadline_and_a_pass_planned_before_it_sends_no_second() -> None:
    stops, libvirt, clock = tracker()
    stops.pressed(KEY, 1, GRACE)
    clock.now = GRACE - 0.5
    assert stops.timer.fire_due() == 0, "nothing due before the grace runs out"
    clock.now = GRACE
    assert stops.timer.fire_due() == 1
    settle()
    assert libvirt.destroys == [GRACE]
    progress = stops.get(KEY)
    assert progress is not None and progress.destroy_issued_at == GRACE and progress.destroyed_after == GRACE
    stops.destroy(KEY, NAME, GRACE, GRACE, None, LOG)  # a pass that saw no destroy yet
    assert libvirt.destroys == [GRACE], "the pass's destroy is dropped: the timer's went out"
    clock.now = GRACE + 30
    stops.destroy(KEY, NAME, GRACE + 30, GRACE, GRACE, LOG)  # the pass's recheck repeats the timer's
    libvirt.wait_requeued(2)
    assert libvirt.destroys == [GRACE, GRACE + 30], "a repeat of the destroy it saw goes out"


def test_a_destroy_the_pass_sent_first_is_not_sent_again_by_the_timer() -> None:
    stops, libvirt, clock = tracker()
    stops.pressed(KEY, 1, GRACE)
    clock.now = GRACE
    stops.destroy(KEY, NAME, GRACE, GRACE, None, LOG)
    libvirt.wait_requeued(1)
    assert stops.timer.fire_due() == 1
    settle()
    assert libvirt.destroys == [GRACE]


def test_the_timer_leaves_a_guest_that_powered_off_and_a_stop_that_ended() -> None:
    stops, libvirt, clock = tracker()
    stops.pressed(KEY, 1, GRACE)
    stops.pressed("ns/other", 1, GRACE)
    libvirt.power = Power.SHUTOFF
    stops.forget("ns/other")  # its VMI runs again
    clock.now = GRACE + 1
    assert stops.timer.fire_due() == 2
    settle()
    assert libvirt.destroys == [] and libvirt.requeued == []
    progress = stops.get(KEY)
    assert progress is not None and progress.destroyed_after is None, "the stop's outcome stays the guest's"


def test_a_grace_raised_mid_stop_moves_the_deadline() -> None:
    stops, libvirt, clock = tracker()
    stops.pressed(KEY, 1, GRACE)
    clock.now = 3.0
    stops.pressed(KEY, 2, 20.0)  # the VMI's grace was raised; the old deadline is still armed
    clock.now = GRACE
    assert stops.timer.fire_due() == 1
    settle()
    assert libvirt.destroys == [], "not at the old deadline"
    clock.now = 20.0
    assert stops.timer.fire_due() == 1, "armed again for the new one"
    settle()
    assert libvirt.destroys == [20.0]


def test_the_timer_leaves_a_guest_whose_vmi_is_wanted_again_before_its_pass_ran() -> None:
    stops, libvirt, clock = tracker()
    stops.pressed(KEY, 1, GRACE)
    libvirt.intent = Intent.RUN  # the manifest came back; its pass has not run yet
    clock.now = GRACE
    assert stops.timer.fire_due() == 1
    settle()
    assert libvirt.destroys == []
