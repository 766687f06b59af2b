"""The lifecycle events the agent's own define and start will cause, so the dispatcher can drop
them instead of queueing a second pass that would only find what the first one just did.

An expectation is recorded before the libvirt call and withdrawn if the call fails; each one
drops at most one event of its kind for that domain, and only until it expires, so a real
event from elsewhere is never taken for an echo for long. The periodic resync is the backstop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

ECHO_SECONDS = 5.0
"""How long an expected echo may take to arrive; libvirt delivers its own in milliseconds."""


class EchoFilter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, ttl: float = ECHO_SECONDS) -> None:
        self._clock = clock
        self._ttl = ttl
        self._lock = threading.Lock()
        self._expected: dict[tuple[str, str], list[float]] = {}
        """(domain, event kind) → deadlines of the echoes still due, oldest first."""

    def expect(self, domain: str, kind: str) -> None:
        """Our own call on ``domain`` is about to cause one ``kind`` event."""
        now = self._clock()
        with self._lock:
            if len(self._expected) > 256:
                self._drop_expired(now)
            self._expected.setdefault((domain, kind), []).append(now + self._ttl)

    def withdraw(self, domain: str, kind: str) -> None:
        """The call failed: the event it would have caused will not come."""
        with self._lock:
            deadlines = self._expected.get((domain, kind))
            if deadlines:
                deadlines.pop()
                if not deadlines:
                    del self._expected[(domain, kind)]

    def swallow(self, domain: str, kind: str) -> bool:
        """True if this event is the echo of our own call (and is used up)."""
        now = self._clock()
        with self._lock:
            deadlines = self._expected.get((domain, kind))
            if not deadlines:
                return False
            while deadlines and deadlines[0] < now:
                deadlines.pop(0)
            echo = bool(deadlines)
            if echo:
                deadlines.pop(0)
            if not deadlines:
                del self._expected[(domain, kind)]
            return echo

    def pending(self) -> int:
        with self._lock:
            return sum(len(deadlines) for deadlines in self._expected.values())

    def _drop_expired(self, now: float) -> None:
        for pair, deadlines in list(self._expected.items()):
            kept = [deadline for deadline in deadlines if deadline >= now]
            if kept:
                self._expected[pair] = kept
            else:
                del self._expected[pair]
