"""Exponential backoff, one definition for every retry in the agent."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base_seconds: float
    """The wait after the first failure."""
    max_seconds: float
    """No wait is longer than this."""

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row (0 for none): base, 2 x base, 4 x base ... max."""
        if failures <= 0:
            return 0.0
        return min(self.base_seconds * 2.0 ** min(failures - 1, 64), self.max_seconds)
