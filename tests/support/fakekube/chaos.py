"""Seeded random faults for the fake API server: the API misbehaving the ways a real one does.

``RandomFaults(rng, rate)`` answers a share of requests with a fault drawn from ``KINDS``:
500, 429 with Retry-After, 409 on writes, 410 on watches, a slow answer, or a cut
connection. Installed with ``FakeApiServer.random_faults(...)``; every fault is counted so a
test can print what it injected.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field

from .httpapi import FaultRule

_EVERY = re.compile("")
KINDS = ("500", "429", "409", "410", "slow", "reset")


@dataclass
class RandomFaults:
    rng: random.Random
    rate: float
    """Share of requests that get a fault."""
    kinds: tuple[str, ...] = KINDS
    spare_user_agent: str = "chaos-user"
    """Requests with this User-Agent (the test's own client) are never faulted."""
    injected: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, method: str, path: str, is_watch: bool, user_agent: str = "") -> FaultRule | None:
        if user_agent == self.spare_user_agent:
            return None
        if not path.startswith(("/api/", "/apis/")):
            return None
        if path in ("/api", "/apis") or path.count("/") <= 3:  # discovery stays up: clients cache it
            return None
        with self._lock:
            if self.rng.random() >= self.rate:
                return None
            kind = self.rng.choice(self._fitting(method, is_watch))
            self.injected[kind] += 1
            slow = round(self.rng.uniform(0.2, 1.5), 2)
        return {
            "500": FaultRule("*", _EVERY, 500, 1),
            "429": FaultRule("*", _EVERY, 429, 1, retry_after=1),
            "409": FaultRule("*", _EVERY, 409, 1, reason="Conflict"),
            "410": FaultRule("*", _EVERY, 410, 1, reason="Expired"),
            "slow": FaultRule("*", _EVERY, 0, 1, delay=slow, status_only=False),
            "reset": FaultRule("*", _EVERY, 0, 1, reset=True),
        }[kind]

    def _fitting(self, method: str, is_watch: bool) -> tuple[str, ...]:
        """409 only answers writes, 410 only watches."""
        return tuple(
            kind
            for kind in self.kinds
            if not (kind == "409" and method in ("GET", "DELETE")) and not (kind == "410" and not is_watch)
        )
