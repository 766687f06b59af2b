"""Destroys at the grace limit, on a fake clock: each guest's destroy goes out at its own
deadline however many guests reach it together, and none waits for another's.

The real Reconciler and KeyedQueue run on a FakeClock; a test "worker" drains what is due,
and the deadline timer fires what is due before each pass, as its own thread would beside
the workers. The fake hypervisor's destroy blocks until the test releases it, as libvirt's
does until QEMU is reaped (about 2 s per guest under TCG here): a destroy that held the
reconcile pass would stop the drain at the first guest. ``pass_cost`` moves the clock on
by each pass's cost, so passes queued behind each other take time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import pytest

from handler.agent.keyed_queue import KeyedQueue
from handler.agent.reconciler import Reconciler
from handler.core.actions import RecordEvent
from handler.core.bdf import Bdf
from handler.core.desired import Desired
from handler.core.domain_state import ObservedDomain, Power, StopCause
from handler.core.domain_xml import identity_of
from handler.core.planner import PlanSettings
from handler.core.render_settings import RenderSettings
from handler.core.status import Phase, VMIStatus
from handler.core.vmi import VMI
from handler.virt.errors import ErrorKind, VirtError

GRACE = 6
RESEND = 3.0
SETTINGS = PlanSettings(RenderSettings(domain_type="qemu", log_dir="/logs"), acpi_resend_seconds=RESEND)
WAIT = 10.0  # real seconds, only ever waited out when the property is broken


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def vmi(name: str) -> VMI:
    return VMI("ns", name, f"uid-{name}", 1, (), False, 1, 2**28, (), None, (), GRACE, "0" * 16)


class DeafGuests:
    """Running guests that ignore the power button; destroy blocks until ``release()``."""

    def __init__(self, clock: FakeClock, names: Iterable[str]) -> None:
        self.clock = clock
        self.vmis = {f"ns_{n}": vmi(n) for n in names}
        self.active = set(self.vmis)
        self.presses: dict[str, int] = dict.fromkeys(self.vmis, 0)
        self.destroys: list[tuple[str, float]] = []
        self.fail_next: int = 0
        self.blocked: set[str] = set()
        """Threads waiting in destroy (as libvirt's caller waits for QEMU to go)."""
        self._cond = threading.Condition()
        self._released = threading.Event()

    def observe(self, name: str) -> ObservedDomain | None:
        if name not in self.vmis:
            return None
        on = name in self.active
        power, cause = (Power.RUNNING, None) if on else (Power.SHUTOFF, StopCause.DESTROYED)
        return ObservedDomain(name, "uuid", power, cause, identity_of(self.vmis[name], (), SETTINGS.render))

    def observe_alone(self, name: str) -> ObservedDomain | None:
        return self.observe(name)

    def request_shutdown(self, name: str) -> None:
        self.presses[name] += 1

    def destroy(self, name: str) -> None:
        with self._cond:
            self.destroys.append((name, self.clock()))
            self._cond.notify_all()
            if self.fail_next:
                self.fail_next -= 1
                raise VirtError(ErrorKind.CONNECTION, 1, "cannot reach libvirtd", f"destroy {name}")
            self.blocked.add(threading.current_thread().name)
        assert self._released.wait(WAIT), "destroy never released"
        with self._cond:
            self.blocked.discard(threading.current_thread().name)
            self.active.discard(name)

    def undefine(self, name: str) -> None:
        self.vmis.pop(name, None)

    def wait_destroys(self, count: int) -> list[tuple[str, float]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.destroys) >= count, WAIT), self.destroys
            return list(self.destroys)

    def release(self) -> None:
        self._released.set()

    def list_managed(self) -> list[ObservedDomain]:
        return [d for d in map(self.observe, list(self.vmis)) if d is not None]

    def foreign_devices(self, owner: str) -> dict[Bdf, str]:
        return {}

    def define(self, xml: str) -> None: ...
    def start(self, name: str) -> None: ...


class Removed:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.pass_cost = 0.0

    def desired(self, key: str) -> Desired | None:
        if threading.current_thread() is threading.main_thread():  # the test's worker, once a pass
            self.clock.now += self.pass_cost
        return None

    def keys(self) -> Iterable[str]:
        return []

    def knows(self, key: str) -> bool:
        return False


class Sink:
    def __init__(self) -> None:
        self.statuses: dict[str, VMIStatus] = {}
        self.history: dict[str, list[VMIStatus]] = {}

    def claim(self, key: str) -> None: ...
    def last_status(self, key: str) -> VMIStatus | None:
        return self.statuses.get(key)

    def write(self, key: str, status: VMIStatus) -> None:
        self.statuses[key] = status
        self.history.setdefault(key, []).append(status)

    def record_event(self, key: str, event: RecordEvent) -> None: ...
    def forget(self, key: str) -> None:
        self.statuses.pop(key, None)


class Agent:
    """The reconciler and its queue on the fake clock, drained by the test."""

    def __init__(self, names: Iterable[str]) -> None:
        self.clock = FakeClock()
        self.guests = DeafGuests(self.clock, names)
        self.sink = Sink()
        self.queue = KeyedQueue(self.clock)
        self.finished: list[str] = []
        self._cond = threading.Condition()
        self.source = Removed(self.clock)
        self.reconciler = Reconciler(
            self.source, self.guests, self.sink, SETTINGS, clock=self.clock, requeue=self._requeued
        )

    def _requeued(self, key: str) -> None:
        """The destroy lane's callback, from the destroy's thread."""
        with self._cond:
            self.queue.add(key)
            self.finished.append(key)
            self._cond.notify_all()

    def wait_finished(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.finished) >= count, WAIT), self.finished

    def at(self, when: float, timer: bool = True) -> None:
        """Move the clock to ``when`` and reconcile everything due, as the workers would; before
        each pass, the deadline timer fires what has come due (unless ``timer`` is off)."""
        self.clock.now = when
        while True:
            if timer and self.reconciler.stops.timer.fire_due():
                self.settle_deadlines()
            key = self.queue.get(timeout=0)
            if key is None:
                return
            outcome = self.reconciler.reconcile(key)
            self.queue.done(key)
            if outcome.requeue_after is not None:
                self.queue.add(key, outcome.requeue_after)

    def settle_deadlines(self) -> None:
        """Wait until each deadline check the timer started has decided: done, or waiting in destroy."""
        end = time.monotonic() + WAIT
        while any(t.name.startswith("deadline-") and t.name not in self.guests.blocked for t in threading.enumerate()):
            assert time.monotonic() < end, "a deadline check never decided"
            time.sleep(0.001)

    def next_due(self) -> float | None:
        return min(self.queue._due.values(), default=None)


@pytest.mark.parametrize("count", [1, 8, 50])
def test_every_destroy_goes_out_at_its_own_deadline_however_many(count: int) -> None:
    names = [f"vm{i}" for i in range(count)]
    agent = Agent(names)
    try:
        for index, name in enumerate(names):  # stops begin 1/64 s apart (exact in binary)
            agent.queue.add(f"ns/{name}", index / 64)
        deadlines = {f"ns_{name}": index / 64 + GRACE for index, name in enumerate(names)}
        while (due := agent.next_due()) is not None and due < GRACE:
            agent.at(due)
        assert agent.guests.destroys == [], "no destroy before the grace ran out"
        assert set(agent.guests.presses.values()) == {2}, "pressed at 0 and again after 3 s"
        while len(agent.guests.destroys) < count:
            due = agent.next_due()
            assert due is not None and due < GRACE + 1, "a VMI left the queue without its destroy"
            agent.at(due)  # no destroy has returned yet: each is still blocked in libvirt
            agent.guests.wait_destroys(sum(1 for d in deadlines.values() if d <= due))
        assert dict(agent.guests.destroys) == deadlines, "each destroy at its own deadline, exactly"
    finally:
        agent.guests.release()
    agent.wait_finished(count)  # each destroy's end puts its VMI back on the queue
    agent.at(agent.clock.now)
    assert agent.sink.statuses == {}, "every removed VMI was forgotten after its destroy"
    assert agent.guests.vmis == {}, "every domain undefined"


def test_a_failed_destroy_is_reported_and_retried_with_backoff() -> None:
    agent = Agent(["vm"])
    agent.guests.fail_next = 2
    agent.queue.add("ns/vm")
    agent.at(0.0)
    agent.at(RESEND)
    agent.at(GRACE)
    agent.wait_finished(1)
    agent.at(GRACE)  # the failed destroy's end requeued the VMI
    synced = agent.sink.statuses["ns/vm"].condition("Synchronized")
    assert synced is not None and (synced.status, synced.reason) == (False, "LibvirtUnavailable")
    assert len(agent.guests.destroys) == 1, "not retried before the backoff"
    agent.at(GRACE + 1.0)  # first failure: 1 s
    agent.wait_finished(2)
    agent.at(GRACE + 1.0)
    agent.at(GRACE + 2.99)
    assert len(agent.guests.destroys) == 2, "second failure: 2 s"
    agent.guests.release()
    agent.at(GRACE + 3.0)
    agent.wait_finished(3)
    agent.at(GRACE + 3.0)
    assert [at for _, at in agent.guests.destroys] == [GRACE, GRACE + 1.0, GRACE + 3.0]
    assert agent.guests.vmis == {} and agent.sink.statuses == {}


def test_passes_while_a_destroy_runs_do_not_issue_another() -> None:
    agent = Agent(["vm"])
    try:
        agent.queue.add("ns/vm")
        for when in (0.0, RESEND, GRACE):
            agent.at(when)
        agent.guests.wait_destroys(1)
        for when in (GRACE, GRACE + 1, GRACE + 20):
            agent.queue.add("ns/vm")  # events, resyncs
            agent.at(when)
        assert len(agent.guests.destroys) == 1
    finally:
        agent.guests.release()
    agent.wait_finished(1)
    agent.at(GRACE + 21)
    assert agent.guests.vmis == {}
    final = agent.sink.history["ns/vm"][-1]
    assert (final.phase, final.reason) == (Phase.FAILED, "Destroyed")


PASS_COST = 0.02
"""A reconcile pass's cost in fake seconds: tens of ms, as measured under TCG on 2 cores."""
BOUND = PASS_COST
"""How late a destroy may go out: the timer fires between two passes, never behind a queue of them."""


def one_deadline(count: int, timer: bool) -> list[float]:
    """``count`` deaf guests stopped together, so one deadline; each destroy's lateness."""
    names = [f"vm{i}" for i in range(count)]
    agent = Agent(names)
    try:
        for name in names:
            agent.queue.add(f"ns/{name}")
        agent.at(0.0, timer)
        agent.at(RESEND, timer)
        assert agent.guests.destroys == [] and set(agent.guests.presses.values()) == {2}, "ACPI resend as before"
        agent.source.pass_cost = PASS_COST  # from here on, passes queue behind each other
        agent.at(GRACE, timer)
        destroys = agent.guests.wait_destroys(count)
        assert sorted(name for name, _ in destroys) == sorted(f"ns_{n}" for n in names), "each destroyed once"
    finally:
        agent.guests.release()
    agent.wait_finished(count)
    agent.at(agent.clock.now, timer)
    assert agent.sink.statuses == {} and agent.guests.vmis == {}, "every domain undefined, every VMI forgotten"
    return [at - GRACE for _, at in destroys]


@pytest.mark.parametrize("count", [1, 8, 50])
def test_destroys_at_one_deadline_start_within_a_bound_whatever_the_number_of_guests(count: int) -> None:
    lateness = one_deadline(count, timer=True)
    print(f"{count} guests: latest destroy {max(lateness):.3f} s after the deadline (bound {BOUND} s)")
    assert min(lateness) >= 0, "no destroy before the grace ran out"
    assert max(lateness) <= BOUND, f"destroys went out up to {max(lateness):.3f} s late with {count} guests"


def test_without_the_deadline_timer_the_last_destroy_waits_behind_every_pass() -> None:
    """What the bound guards against: destroys decided only by the passes, one after another."""
    lateness = one_deadline(50, timer=False)
    assert max(lateness) == pytest.approx(50 * PASS_COST), "the 50th pass at the deadline ends a second late"
    assert max(lateness) > BOUND
