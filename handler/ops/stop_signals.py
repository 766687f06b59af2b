"""SIGTERM and SIGINT as an event that the main loop waits on.

A Python signal handler runs in the main thread between two bytecodes, which may be in the
middle of a log call that holds the output's lock. A handler that logs then waits on a lock its
own thread holds, and the process hangs forever: a SIGTERM that arrived while the agent wrote
its "first sync done" line did exactly that. So the handler here only records the signal and
sets the event; whoever waits on it logs what arrived.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


class StopSignals:
    def __init__(self) -> None:
        self.event = threading.Event()
        self._received: list[str] = []
        """Signal names in arrival order; a list append is atomic, so the handler may do it."""

    def install(self, signums: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        for signum in signums:
            signal.signal(signum, self._on_signal)

    @property
    def received(self) -> tuple[str, ...]:
        return tuple(self._received)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._received.append(signal.Signals(signum).name)
        self.event.set()
