"""Waiting for something a test cannot be told about: poll it, and fail naming what never came."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(what: str | Callable[[], str], check: Callable[[], T | None], timeout: float, poll: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy, and return that; fail with ``what``
    (or ``what()``, for a message with the state at the end) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what() if callable(what) else what}")
        time.sleep(poll)


def eventually(condition: Callable[[], T | None], timeout: float = 60.0, what: str = "") -> T:
    """``wait_until`` with the condition first, as the fake-cluster tests write it; the default bound
    is generous because the machine is shared and slow (a passing test never waits it out)."""
    return wait_until(what or str(condition), condition, timeout, poll=0.05)
