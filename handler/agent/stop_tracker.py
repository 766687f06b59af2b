"""The shell's memory of ongoing stops, one StopProgress per VMI, and the destroys in flight.

Reconcile workers and destroy threads both update it, so every change goes through one
lock; how the progress changes is decided by the pure functions in core/stop_progress.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from handler.agent.destroy_lane import DestroyLane
from handler.core.desired import StopProgress
from handler.core.port_error import PortError
from handler.core.stop_progress import destroy_ended, destroy_issued, pressed
from handler.ops.metrics import Metrics

Logger = structlog.typing.FilteringBoundLogger


class StopTracker:
    def __init__(
        self,
        destroy: Callable[[str], None],
        requeue: Callable[[str], None],
        clock: Callable[[], float],
        metrics: Metrics | None = None,
    ) -> None:
        self._requeue = requeue
        self._clock = clock
        self._metrics = metrics
        self._lock = threading.Lock()
        self._stops: dict[str, StopProgress] = {}
        self._lane = DestroyLane(destroy, self._ended, clock)

    def get(self, key: str) -> StopProgress | None:
        with self._lock:
            return self._stops.get(key)

    def forget(self, key: str) -> None:
        with self._lock:
            self._stops.pop(key, None)

    def pressed(self, key: str, attempt: int) -> None:
        self._update(key, lambda progress: pressed(progress, attempt, self._clock()))

    def destroy(self, key: str, name: str, after_seconds: float, deadline: float, log: Logger) -> None:
        """Record the destroy and issue it on its own thread; the VMI is requeued when it ends."""
        progress = self._update(key, lambda old: destroy_issued(old, after_seconds, self._clock()))
        waited = progress.destroyed_after or 0.0
        self._lane.submit(key, name, deadline, log.bind(after_seconds=round(waited, 1)))

    def _ended(self, key: str, error: PortError | None) -> None:
        """From the destroy's own thread."""
        failure = (error.reason, str(error)) if error is not None else None
        with self._lock:
            progress = self._stops.get(key)
            if progress is not None:
                self._stops[key] = destroy_ended(progress, failure)
        if error is not None and self._metrics is not None:
            self._metrics.count_error(error.reason)
        self._requeue(key)

    def _update(self, key: str, change: Callable[[StopProgress | None], StopProgress]) -> StopProgress:
        with self._lock:
            progress = change(self._stops.get(key))
            self._stops[key] = progress
            return progress
