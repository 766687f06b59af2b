"""Proof that every reconcile worker is still turning, for the systemd watchdog and /healthz.

Workers beat on each pass of their loop (at least twice a second when idle). The
watchdog is fed only while every worker has beaten recently, so a wedged worker
gets the agent restarted instead of being papered over by a timer thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class WorkerPulse:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def register(self, worker: str) -> None:
        self.beat(worker)

    def beat(self, worker: str) -> None:
        with self._lock:
            self._last[worker] = self._clock()

    def stalled(self, within: float) -> list[str]:
        """Workers that have not beaten for ``within`` seconds."""
        now = self._clock()
        with self._lock:
            return sorted(worker for worker, last in self._last.items() if now - last > within)
