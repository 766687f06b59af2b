"""How a stop's memory changes as presses and destroys are carried out."""

from __future__ import annotations

from dataclasses import replace

from handler.core.actions import DestroyDomain
from handler.core.desired import Intent, StopProgress
from handler.core.domain_state import ObservedDomain, Power, StopCause
from handler.core.stop_progress import deadline, destroy_ended, destroy_issued, due_destroy, pressed

GONE = Intent.REMOVE
RUNNING = ObservedDomain("ns_vm", "uuid", Power.RUNNING, None, None)
OFF = ObservedDomain("ns_vm", "uuid", Power.SHUTOFF, StopCause.GUEST_POWEROFF, None)


def test_the_first_press_starts_the_clock_and_later_ones_keep_it() -> None:
    first = pressed(None, 1, 10.0, 30.0)
    assert first == StopProgress(started_at=10.0, last_request_at=10.0, requests=1, grace=30.0)
    again = pressed(first, 2, 13.0, 30.0)
    assert (again.started_at, again.last_request_at, again.requests) == (10.0, 13.0, 2)
    assert pressed(again, 1, 40.0, 30.0).started_at == 40.0, "a new stop (attempt 1) starts over"


def test_the_deadline_follows_the_grace_of_the_last_press_until_a_destroy_goes_out() -> None:
    first = pressed(None, 1, 10.0, 30.0)
    assert deadline(first) == 40.0
    assert deadline(pressed(first, 2, 13.0, 60.0)) == 70.0, "the VMI's grace was raised mid-stop"
    assert deadline(destroy_issued(first, 30.0, 40.0)) is None
    assert deadline(None) is None
    assert deadline(StopProgress(10.0, 10.0, 1)) is None, "no grace known: the pass decides"


def test_the_deadline_timer_destroys_a_running_guest_once_its_grace_ran_out() -> None:
    stop = pressed(None, 1, 10.0, 30.0)
    assert due_destroy(stop, RUNNING, GONE, 39.9) is None, "not before the deadline"
    assert due_destroy(stop, RUNNING, GONE, 40.0) == DestroyDomain("ns_vm", 30.0, 40.0)
    assert due_destroy(stop, RUNNING, GONE, 40.25) == DestroyDomain("ns_vm", 30.25, 40.0), "late: the grace given"
    assert due_destroy(stop, RUNNING, GONE, 40.0 - 0.0005) is not None, "within a timer tick counts as reached"


def test_the_deadline_timer_leaves_everything_else_to_the_reconcile_pass() -> None:
    stop = pressed(None, 1, 10.0, 30.0)
    assert due_destroy(stop, OFF, GONE, 41.0) is None, "the guest powered off in time"
    assert due_destroy(stop, None, GONE, 41.0) is None, "the domain is gone"
    assert due_destroy(None, RUNNING, GONE, 41.0) is None, "the stop is over (the VMI runs again)"
    assert due_destroy(destroy_issued(stop, 30.0, 40.0), RUNNING, GONE, 41.0) is None, "the pass destroyed it already"
    assert due_destroy(replace(stop, grace=None), RUNNING, GONE, 41.0) is None
    assert due_destroy(stop, RUNNING, Intent.RUN, 41.0) is None, "the VMI is wanted again: no destroy"
    assert due_destroy(stop, RUNNING, Intent.STOP, 41.0) is not None
    assert due_destroy(stop, RUNNING, Intent.HALT, 41.0) is not None, "the agent stops with its guests"


def test_a_destroy_keeps_the_grace_the_first_one_gave() -> None:
    issued = destroy_issued(pressed(None, 1, 10.0, 30.0), 30.0, 40.0)
    assert (issued.destroyed_after, issued.destroy_issued_at) == (30.0, 40.0)
    retried = destroy_issued(issued, 61.0, 71.0)
    assert (retried.destroyed_after, retried.destroy_issued_at) == (30.0, 71.0)
    at_once = destroy_issued(None, 0.0, 5.0)
    assert (at_once.started_at, at_once.requests, at_once.destroyed_after) == (5.0, 0, 0.0)


def test_failures_count_up_and_a_success_clears_them() -> None:
    issued = destroy_issued(None, 0.0, 5.0)
    failed = destroy_ended(destroy_ended(issued, ("LibvirtUnavailable", "x")), ("SyncFailed", "y"))
    assert (failed.destroy_failures, failed.destroy_error) == (2, ("SyncFailed", "y"))
    done = destroy_ended(failed, None)
    assert (done.destroy_failures, done.destroy_error, done.destroy_issued_at) == (0, None, 5.0)
