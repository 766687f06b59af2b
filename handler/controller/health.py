"""/healthz and /readyz of one controller replica.

Alive: every worker and informer thread is up, no worker has been stuck on one VMI for
``stall_seconds``, the leader-election loop has turned within ``stall_seconds``, and a
leader's renewals are not overdue (a wedged replica is restarted; an API server that does
not answer is not its fault, so failed rounds alone do not count). Ready: the VMI and pod
caches have had their first list. A standby is ready too: it is the one that takes over.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from handler.controller.controller import Controller
from handler.controller.lease import LeaderElector

STALL_SECONDS = 30.0


class ControllerHealth:
    def __init__(
        self,
        controller: Controller,
        elector: LeaderElector,
        stall_seconds: float = STALL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._controller = controller
        self._elector = elector
        self._stall = stall_seconds
        self._clock = clock
        self._turned = clock()

    def turned(self) -> None:
        """The leader-election loop finished a round (called by the loop itself, never by a timer)."""
        self._turned = self._clock()

    def alive(self) -> tuple[bool, str]:
        down = self._controller.threads_down()
        if down:
            return False, f"threads ended: {', '.join(down)}"
        stalled = self._controller.pulse.stalled(within=self._stall)
        if stalled:
            return False, f"workers stuck on one VMI for over {self._stall:.0f}s: {', '.join(stalled)}"
        idle = self._clock() - self._turned
        if idle > self._stall:
            return False, f"the leader-election loop last turned {idle:.0f}s ago (limit {self._stall:.0f}s)"
        renewal = self._elector.since_renewal()
        deadline = self._elector.timing.renew_deadline_seconds
        if renewal is not None and renewal > deadline:
            return False, f"lease renewals stalled: last renewed {renewal:.0f}s ago (deadline {deadline:.0f}s)"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if not self._controller.wait_synced(0):
            return False, "the VMI and launcher pod caches have not had their first list yet"
        return True, "leading" if self._elector.leading else "standby, ready to take over"
