"""The one backoff the agent uses for every retry."""

from __future__ import annotations

from handler.core.backoff import Backoff


def test_doubles_from_the_base_up_to_the_max() -> None:
    backoff = Backoff(0.5, 4.0)
    assert [backoff.delay(n) for n in range(7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_huge_failure_count_stays_at_the_max() -> None:
    assert Backoff(1.0, 300.0).delay(10_000) == 300.0
