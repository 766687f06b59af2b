"""How an ongoing stop's memory changes as the shell carries out the plan: pure functions.

The planner reads a StopProgress (handler/core/desired.py) and asks for presses and a
destroy; the shell records what it did through these, and feeds the result back.
"""

from __future__ import annotations

from dataclasses import replace

from handler.core.actions import DestroyDomain
from handler.core.desired import Intent, StopProgress
from handler.core.domain_state import ObservedDomain

DEADLINE_TICK = 0.001
"""Closer than this to the grace limit counts as reached: no timer wakes up finer than that."""


def pressed(progress: StopProgress | None, attempt: int, now: float, grace: float) -> StopProgress:
    """After the power button's ``attempt``-th press: the first press starts the stop's clock;
    each press carries the grace in force, so a VMI edited mid-stop moves the deadline."""
    if progress is None or attempt == 1:
        return StopProgress(started_at=now, last_request_at=now, requests=1, grace=grace)
    return replace(progress, last_request_at=now, requests=attempt, grace=grace)


def deadline(progress: StopProgress | None) -> float | None:
    """When the grace runs out, for a stop whose destroy has not gone out yet."""
    if progress is None or progress.grace is None or progress.destroy_issued_at is not None:
        return None
    return progress.started_at + progress.grace


def due_destroy(
    progress: StopProgress | None, domain: ObservedDomain | None, intent: Intent, now: float
) -> DestroyDomain | None:
    """The deadline timer's decision: the first destroy of a stop whose grace has run out, while
    the guest still runs and its VMI still asks for the stop. Anything else (guest off, VMI
    wanted again, stop over or destroyed already) is the reconcile pass's to handle."""
    due = deadline(progress)
    if progress is None or due is None or domain is None or not domain.active or intent is Intent.RUN:
        return None
    if now < due - DEADLINE_TICK:
        return None
    return DestroyDomain(domain.name, now - progress.started_at, due)


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
