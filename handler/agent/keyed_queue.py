"""A work queue keyed by VMI: duplicates collapse, and a key is never handed to two workers at once.

Adding a key that is being worked on marks it dirty; it comes back as soon as the
worker calls done(). Each key keeps only its earliest due time.

Keys added as ``background`` (the periodic resync's sweep over every VMI) are handed out only
when no other key is due, and to one worker at a time: a VMI that just changed never waits
behind a sweep of 1,000 others, nor shares the interpreter with several workers sweeping.
A key added both ways counts as a foreground one.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable


class KeyedQueue:
    def __init__(self, clock: Callable[[], float], background_workers: int = 1) -> None:
        self._clock = clock
        self._background_workers = background_workers
        """At most this many background keys are worked on at once."""
        self._cond = threading.Condition()
        self._due: dict[str, float] = {}
        self._swept: set[str] = set()
        """The keys of ``_due`` that are background keys."""
        self._heaps: tuple[list[tuple[float, str]], list[tuple[float, str]]] = ([], [])
        """Foreground and background keys by due time; entries that no longer match ``_due`` are stale."""
        self._active: set[str] = set()
        self._sweeping: set[str] = set()
        """The active keys that were handed out as background keys."""
        self._dirty: dict[str, tuple[float, bool]] = {}
        self._closed = False

    def add(self, key: str, delay: float = 0.0, background: bool = False) -> None:
        with self._cond:
            when = self._clock() + max(0.0, delay)
            if key in self._active:
                self._dirty[key] = _merge(self._dirty.get(key), when, background)
                return
            entry = _merge(self._entry(key), when, background)
            if entry != self._entry(key):
                self._push(key, entry)
                self._cond.notify()

    def get(self, timeout: float | None = None) -> str | None:
        """The next due key (now marked active), or None on timeout or close."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._closed:
                now = self._clock()
                key = self._take_due(now)
                if key is not None:
                    return key
                due = self._next_due(self._may_sweep())
                wait = None if due is None else due - now
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
            self._sweeping.discard(key)
            if key in self._dirty:
                entry = _merge(self._entry(key), *self._dirty.pop(key))
                if entry != self._entry(key):
                    self._push(key, entry)
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
                now = self._clock()
                due = self._next_due(True)
                busy = self._active or (due is not None and due <= now)
                if not busy:
                    return True
                if now >= deadline:
                    return False
                self._cond.wait(min(0.05, deadline - now))

    def _entry(self, key: str) -> tuple[float, bool] | None:
        """(due time, background) of a queued key."""
        return (self._due[key], key in self._swept) if key in self._due else None

    def _push(self, key: str, entry: tuple[float, bool]) -> None:
        when, background = entry
        self._due[key] = when
        (self._swept.add if background else self._swept.discard)(key)
        heapq.heappush(self._heaps[background], (when, key))

    def _take_due(self, now: float) -> str | None:
        """The first due foreground key, else the first due background key (marked active)."""
        for background, heap in enumerate(self._heaps[: 2 if self._may_sweep() else 1]):
            self._drop_stale(heap, bool(background))
            if heap and heap[0][0] <= now:
                _, key = heapq.heappop(heap)
                del self._due[key]
                self._swept.discard(key)
                self._active.add(key)
                if background:
                    self._sweeping.add(key)
                return key
        return None

    def _may_sweep(self) -> bool:
        return len(self._sweeping) < self._background_workers

    def _next_due(self, background: bool) -> float | None:
        """The earliest due time of a queued key (of a foreground key only, unless ``background``)."""
        heaps = self._heaps[: 2 if background else 1]
        for index, heap in enumerate(heaps):
            self._drop_stale(heap, bool(index))
        return min((heap[0][0] for heap in heaps if heap), default=None)

    def _drop_stale(self, heap: list[tuple[float, str]], background: bool) -> None:
        while heap and self._entry(heap[0][1]) != (heap[0][0], background):
            heapq.heappop(heap)


def _merge(entry: tuple[float, bool] | None, when: float, background: bool) -> tuple[float, bool]:
    """The earliest due time wins; a key is background only if every add of it was."""
    if entry is None:
        return when, background
    return min(entry[0], when), entry[1] and background
