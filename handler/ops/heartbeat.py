"""The reconcile loop's pulse: feeds systemd's watchdog and tells /healthz the loop is alive.

The loop calls ``beat()`` once per iteration, idle or not, and waits at most ``period`` for
work, so a wedged loop stops the pings and systemd restarts the agent. A timer thread would
keep pinging through a deadlock, which is why nothing here runs on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from handler.ops.sdnotify import Notifier


class Heartbeat:
    def __init__(self, notifier: Notifier, clock: Callable[[], float] = time.monotonic) -> None:
        self._notifier = notifier
        self._clock = clock
        interval = notifier.watchdog_interval()
        self._ping_every = interval / 2 if interval else None
        self._started = clock()
        self._last_beat: float | None = None
        self._last_ping: float | None = None

    @property
    def period(self) -> float | None:
        """The longest the loop may wait between beats (half of WatchdogSec=), None without a watchdog."""
        return self._ping_every

    def beat(self) -> bool:
        """Record a loop iteration; forwards WATCHDOG=1 at most every ``period``. True if it pinged."""
        now = self._clock()
        self._last_beat = now
        if self._ping_every is None:
            return False
        if self._last_ping is not None and now - self._last_ping < self._ping_every:
            return False
        self._last_ping = now
        return self._notifier.watchdog()

    def age(self) -> float | None:
        """Seconds since the last beat, None before the first."""
        return None if self._last_beat is None else self._clock() - self._last_beat

    def check(self, max_age: float) -> tuple[bool, str]:
        """A /healthz probe: alive if the loop beat within ``max_age`` seconds. Start-up gets the
        same allowance, counted from when the heartbeat was made."""
        age = self.age()
        if age is None:
            waited = self._clock() - self._started
            if waited > max_age:
                return False, f"the reconcile loop has not run in the {waited:.0f}s since start"
            return True, "starting"
        if age > max_age:
            return False, f"the reconcile loop last ran {age:.0f}s ago (limit {max_age:.0f}s)"
        return True, "ok"
