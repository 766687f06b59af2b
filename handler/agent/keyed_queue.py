"""A work queue keyed by VMI: duplicates collapse, and a key is never handed to two workers at once.

Adding a key that is being worked on marks it dirty; it comes back as soon as the
worker calls done(). Each key keeps only its earliest due time.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable


class KeyedQueue:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._active: set[str] = set()
        self._dirty: dict[str, float] = {}
        self._closed = False

    def add(self, key: str, delay: float = 0.0) -> None:
        with self._cond:
            when = self._clock() + max(0.0, delay)
            if key in self._active:
                self._dirty[key] = min(when, self._dirty.get(key, when))
                return
            if key in self._due and self._due[key] <= when:
                return
            self._due[key] = when
            heapq.heappush(self._heap, (when, key))
            self._cond.notify()

    def get(self, timeout: float | None = None) -> str | None:
        """The next due key (now marked active), or None on timeout or close."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._closed:
                self._drop_stale()
                now = self._clock()
                if self._heap and self._heap[0][0] <= now:
                    _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    self._active.add(key)
                    return key
                wait = self._heap[0][0] - now if self._heap else None
                if deadline is not None:
                    left = deadline - now
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)
            return None

    def done(self, key: str) -> None:
        with self._cond:
            self._active.discard(key)
            if key in self._dirty:
                when = self._dirty.pop(key)
                if key not in self._due or when < self._due[key]:
                    self._due[key] = when
                    heapq.heappush(self._heap, (when, key))
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def pending(self) -> int:
        with self._cond:
            return len(self._due) + len(self._active)

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is due now or being worked on (future requeues don't count)."""
        deadline = self._clock() + timeout
        with self._cond:
            while True:
                self._drop_stale()
                now = self._clock()
                busy = self._active or (self._heap and self._heap[0][0] <= now)
                if not busy:
                    return True
                if now >= deadline:
                    return False
                self._cond.wait(min(0.05, deadline - now))

    def _drop_stale(self) -> None:
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
