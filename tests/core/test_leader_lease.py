"""Lease moves: who creates, renews, takes over or waits, on a candidate's own clock."""

from __future__ import annotations

from handler.core.leader_lease import LeaseMove, LeaseRecord, LeaseTiming, next_move, still_leading

HELD = LeaseRecord("a", 10, "2026-12-01T00:00:00.000000Z")


def test_no_lease_is_created() -> None:
    assert next_move("b", None, 0.0, 0.0) is LeaseMove.CREATE


def test_the_holder_renews() -> None:
    assert next_move("a", HELD, 0.0, 100.0) is LeaseMove.RENEW


def test_a_standby_waits_until_the_record_has_stood_for_its_duration() -> None:
    assert next_move("b", HELD, 50.0, 59.9) is LeaseMove.WAIT
    assert next_move("b", HELD, 50.0, 60.0) is LeaseMove.TAKE


def test_a_released_lease_is_taken_at_once() -> None:
    assert next_move("b", LeaseRecord("", 10, ""), 50.0, 50.0) is LeaseMove.TAKE


def test_a_leader_stops_acting_before_anyone_may_take_over() -> None:
    timing = LeaseTiming()
    assert still_leading(0.0, timing.renew_deadline_seconds - 0.1, timing)
    assert not still_leading(0.0, timing.renew_deadline_seconds, timing)
    assert timing.renew_deadline_seconds < timing.duration_seconds
    assert timing.worst_takeover_seconds <= 15
