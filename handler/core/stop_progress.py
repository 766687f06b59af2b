"""How an ongoing stop's memory changes as the shell carries out the plan: pure functions.

The planner reads a StopProgress (handler/core/desired.py) and asks for presses and a
destroy; the shell records what it did through these, and feeds the result back.
"""

from __future__ import annotations

from dataclasses import replace

from handler.core.desired import StopProgress


def pressed(progress: StopProgress | None, attempt: int, now: float) -> StopProgress:
    """After the power button's ``attempt``-th press: the first press starts the stop's clock."""
    if progress is None or attempt == 1:
        return StopProgress(started_at=now, last_request_at=now, requests=1)
    return replace(progress, last_request_at=now, requests=attempt)


def destroy_issued(progress: StopProgress | None, after_seconds: float, now: float) -> StopProgress:
    """A destroy handed to libvirt; the grace given is the first destroy's (a retry keeps it)."""
    base = progress or StopProgress(now, now, 0)
    waited = after_seconds if base.destroyed_after is None else base.destroyed_after
    return replace(base, destroyed_after=waited, destroy_issued_at=now)


def destroy_ended(progress: StopProgress, failure: tuple[str, str] | None) -> StopProgress:
    """libvirt answered the destroy: ``failure`` is (reason, message) when it failed."""
    if failure is None:
        return replace(progress, destroy_error=None, destroy_failures=0)
    return replace(progress, destroy_error=failure, destroy_failures=progress.destroy_failures + 1)
