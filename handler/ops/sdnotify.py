"""sd_notify(3) without libsystemd: readiness, status and watchdog messages to the service manager.

Fails soft: with NOTIFY_SOCKET unset (a terminal, a container) every call is a no-op that
returns False, so the same binary runs anywhere. Watchdog pings come from the caller's loop
through ``Heartbeat`` (handler/ops/heartbeat.py), never from a timer thread of their own.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    """Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID once, when built."""

    def __init__(self) -> None:
        self._address = _address(os.environ.get("NOTIFY_SOCKET", ""))
        self._watchdog = _watchdog_interval(os.environ.get("WATCHDOG_USEC", ""), os.environ.get("WATCHDOG_PID", ""))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """WatchdogSec= in seconds if the watchdog is on for this process; ping at half of it."""
        return self._watchdog

    def ready(self) -> bool:
        """Start-up done (or a reload finished): the unit becomes active."""
        return self.send("READY=1")

    def status(self, text: str) -> bool:
        """One line shown by ``systemctl status``."""
        return self.send(f"STATUS={' '.join(text.splitlines())}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def reloading(self) -> bool:
        """Reload begun; send ``ready()`` when it is done. MONOTONIC_USEC lets systemd ≥ 253 match them."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time while starting or stopping (e.g. a slow guest shutdown)."""
        return self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False if not under systemd or the send failed."""
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(assignments).encode(), self._address)
        except OSError:
            return False
        return True


def _address(value: str) -> bytes | None:
    """A path, or '@name' for an abstract socket; other forms (vsock:) are not ours to speak."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return os.fsencode(value)
    return None


def _watchdog_interval(usec: str, pid: str) -> float | None:
    """WATCHDOG_PID, when set, names the process the watchdog is meant for; a child inherits the
    variables but is not the one being watched."""
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None
