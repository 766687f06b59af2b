"""One thread that wakes at keyed deadlines and hands each key to a callback.

Its first use is each stop's grace deadline. The reconcile pass planned for the deadline waits
behind every other pass due at the same moment (with N guests and one grace, about N / workers
passes), so a destroy decided there goes out later the more guests there are. The timer does not
queue behind anything: each firing only starts the destroy lane's thread for that VMI, which
decides and acts on its own. The manifest directory uses it too, for files that settle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from handler.agent.keyed_queue import KeyedQueue

log = structlog.get_logger("qat_handler.deadlines")


class DeadlineTimer:
    def __init__(self, clock: Callable[[], float], fire: Callable[[str], None], name: str = "grace-deadlines") -> None:
        self._clock = clock
        self._name = name
        self._fire = fire
        self._due = KeyedQueue(clock)
        """Earliest time kept for each key: a stale entry fires early and the callback re-arms."""
        self._thread: threading.Thread | None = None

    def arm(self, key: str, at: float) -> None:
        self._due.add(key, at - self._clock())

    def start(self) -> None:
        """Fire on a thread of its own (the agent); tests on a fake clock call fire_due()."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._due.close()

    def fire_due(self) -> int:
        """Fire every deadline that has come; how many fired."""
        fired = 0
        while (key := self._due.get(timeout=0)) is not None:
            self._due.done(key)
            self._fire(key)
            fired += 1
        return fired

    def _run(self) -> None:
        while (key := self._due.get()) is not None:
            self._due.done(key)
            try:
                self._fire(key)
            except Exception:  # a grace's reconcile pass is the backstop; a file is read on its next change
                log.exception("deadline timer crashed", timer=self._name, key=key)
