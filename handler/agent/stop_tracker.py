"""The shell's memory of ongoing stops, one StopProgress per VMI, and the destroys in flight.

Reconcile workers, the deadline timer and destroy threads all update it, so every change goes
through one lock; how the progress changes is decided by the pure functions in
core/stop_progress.py. A destroy goes out from whichever comes first at the grace limit, the
deadline timer or the reconcile pass, and only once: each checks, under the lock, that no
other destroy went out since it decided.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from handler.agent.deadline_timer import DeadlineTimer
from handler.agent.destroy_lane import DestroyLane
from handler.core.desired import Intent, StopProgress
from handler.core.domain_state import ObservedDomain
from handler.core.port_error import PortError
from handler.core.stop_progress import deadline, destroy_ended, destroy_issued, due_destroy, pressed
from handler.core.vmi import domain_name_for
from handler.ops.metrics import Metrics

Logger = structlog.typing.FilteringBoundLogger
log = structlog.get_logger("qat_handler.stops")


class StopTracker:
    def __init__(
        self,
        destroy: Callable[[str], None],
        requeue: Callable[[str], None],
        clock: Callable[[], float],
        metrics: Metrics | None = None,
        observe: Callable[[str], ObservedDomain | None] = lambda _name: None,
        intent: Callable[[str], Intent] = lambda _key: Intent.REMOVE,
    ) -> None:
        """``observe`` looks the domain up and ``intent`` asks the source what the VMI wants when
        its deadline comes: the timer destroys only a guest still running that should stop."""
        self._requeue = requeue
        self._clock = clock
        self._metrics = metrics
        self._observe = observe
        self._intent = intent
        self._lock = threading.Lock()
        self._stops: dict[str, StopProgress] = {}
        self._lane = DestroyLane(destroy, self._ended, clock)
        self.timer = DeadlineTimer(clock, lambda key: self._lane.run(key, self._at_deadline))

    def get(self, key: str) -> StopProgress | None:
        with self._lock:
            return self._stops.get(key)

    def forget(self, key: str) -> None:
        with self._lock:
            self._stops.pop(key, None)

    def pressed(self, key: str, attempt: int, grace: float) -> None:
        progress = self._update(key, lambda old: pressed(old, attempt, self._clock(), grace))
        due = deadline(progress)
        if due is not None:
            self.timer.arm(key, due)

    def destroy(
        self, key: str, name: str, after_seconds: float, due: float, repeats: float | None, log: Logger
    ) -> None:
        """Record the destroy and issue it on its own thread; the VMI is requeued when it ends.
        Dropped if another destroy went out since the plan saw ``repeats`` (the timer's)."""
        with self._lock:
            old = self._stops.get(key)
            if (old.destroy_issued_at if old is not None else None) != repeats:
                log.debug("destroy already issued by the deadline timer")
                return
            progress = self._stops[key] = destroy_issued(old, after_seconds, self._clock())
        waited = progress.destroyed_after or 0.0
        self._lane.submit(key, name, due, log.bind(after_seconds=round(waited, 1)))

    def _at_deadline(self, key: str) -> None:
        """On the destroy lane's thread: destroy now if the grace ran out on a guest still running."""
        name = domain_name_for(key)
        bound = log.bind(vmi=key, domain=name)
        try:
            domain = self._observe(name)
            intent = self._intent(key)
        except PortError as error:  # libvirt unreachable: the reconcile pass retries
            bound.warning("deadline check failed", reason=error.reason, error=str(error))
            return
        with self._lock:
            progress = self._stops.get(key)
            now = self._clock()
            action = due_destroy(progress, domain, intent, now)
            if action is not None:
                self._stops[key] = destroy_issued(progress, action.after_seconds, now)
        if action is not None:
            bound = bound.bind(after_seconds=round(action.after_seconds, 1), by="deadline timer")
            self._lane.destroy_now(key, name, action.deadline, bound)
            return
        due = deadline(progress)
        if due is not None and due > now and domain is not None and domain.active:
            self.timer.arm(key, due)  # the VMI's grace grew since the timer was armed

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
