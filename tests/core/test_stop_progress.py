"""How a stop's memory changes as presses and destroys are carried out."""

from __future__ import annotations

from handler.core.desired import StopProgress
from handler.core.stop_progress import destroy_ended, destroy_issued, pressed


def test_the_first_press_starts_the_clock_and_later_ones_keep_it() -> None:
    first = pressed(None, 1, 10.0)
    assert first == StopProgress(started_at=10.0, last_request_at=10.0, requests=1)
    again = pressed(first, 2, 13.0)
    assert (again.started_at, again.last_request_at, again.requests) == (10.0, 13.0, 2)
    assert pressed(again, 1, 40.0).started_at == 40.0, "a new stop (attempt 1) starts over"


def test_a_destroy_keeps_the_grace_the_first_one_gave() -> None:
    issued = destroy_issued(pressed(None, 1, 10.0), 30.0, 40.0)
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
