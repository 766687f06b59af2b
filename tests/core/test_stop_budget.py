"""The stop budget: what the unit's TimeoutStopSec covers, and when systemd is asked for more."""

from __future__ import annotations

from handler.core.stop_budget import (
    STOP_MARGIN_SECONDS,
    UNIT_GRACE_SECONDS,
    UNIT_STOP_TIMEOUT_SECONDS,
    stop_extension,
    stop_seconds,
)
from handler.core.vmi_schema import MAX_GRACE_SECONDS


def test_graces_the_unit_covers_ask_for_nothing() -> None:
    for grace in (0, 1, 30, UNIT_GRACE_SECONDS):
        assert stop_extension(grace) is None
        assert stop_seconds(grace) <= UNIT_STOP_TIMEOUT_SECONDS


def test_a_longer_grace_asks_for_itself_plus_the_margin() -> None:
    assert stop_extension(UNIT_GRACE_SECONDS + 1) == UNIT_GRACE_SECONDS + 1 + STOP_MARGIN_SECONDS
    assert stop_extension(MAX_GRACE_SECONDS) == MAX_GRACE_SECONDS + STOP_MARGIN_SECONDS


def test_every_grace_the_parser_accepts_is_covered() -> None:
    for grace in range(0, MAX_GRACE_SECONDS + 1, 7):
        budget = stop_extension(grace) or UNIT_STOP_TIMEOUT_SECONDS
        assert budget >= grace + STOP_MARGIN_SECONDS
