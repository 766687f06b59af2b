"""Leader election on a coordination.k8s.io Lease, as client-go does it, decided as data.

A candidate never compares the holder's ``renewTime`` with its own clock (clocks differ
between nodes): it notes when it first saw the current record, and the lease is expired
once that record has stood unchanged for ``leaseDurationSeconds`` of its own time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    duration_seconds: int = 10
    """How long a record holds without renewal. A standby takes over at most this plus one retry later."""
    renew_deadline_seconds: float = 7.0
    """A leader that has not renewed for this long stops acting, before anyone may take over."""
    retry_seconds: float = 2.0
    """How often candidates try, and leaders renew."""

    @property
    def worst_takeover_seconds(self) -> float:
        return self.duration_seconds + self.retry_seconds


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    holder: str
    duration_seconds: int
    renew_time: str
    acquire_time: str = ""
    transitions: int = 0


class LeaseMove(StrEnum):
    CREATE = "create"
    RENEW = "renew"
    TAKE = "take"
    WAIT = "wait"


def next_move(identity: str, record: LeaseRecord | None, unchanged_since: float, now: float) -> LeaseMove:
    """What ``identity`` does with the Lease it just read; ``unchanged_since`` is when this record was first seen."""
    if record is None:
        return LeaseMove.CREATE
    if record.holder == identity:
        return LeaseMove.RENEW
    if not record.holder or now - unchanged_since >= record.duration_seconds:
        return LeaseMove.TAKE
    return LeaseMove.WAIT


def still_leading(last_renewed: float, now: float, timing: LeaseTiming) -> bool:
    """False once renewals have failed for the renew deadline: stop acting before the lease can pass on."""
    return now - last_renewed < timing.renew_deadline_seconds
