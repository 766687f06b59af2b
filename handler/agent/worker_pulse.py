"""Proof that every reconcile worker is still turning, for the systemd watchdog and /healthz.

A worker is either waiting for work (fine for any length of time) or working on one VMI
since some moment. A worker that has been working on one VMI for too long is stalled:
a libvirt call that never returns, or a deadlock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class WorkerPulse:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._busy_since: dict[str, float | None] = {}

    def register(self, worker: str) -> None:
        self.waiting(worker)

    def working(self, worker: str) -> None:
        with self._lock:
            self._busy_since[worker] = self._clock()

    def waiting(self, worker: str) -> None:
        with self._lock:
            self._busy_since[worker] = None

    def stalled(self, within: float) -> list[str]:
        """Workers that have been busy with one VMI for more than ``within`` seconds."""
        now = self._clock()
        with self._lock:
            return sorted(w for w, since in self._busy_since.items() if since is not None and now - since > within)
