"""Is the agent alive? One answer for systemd's watchdog and for /healthz.

The main loop calls ``tick()`` on every turn. It forwards WATCHDOG=1 only while every
reconcile worker has turned recently too, so a wedged worker (a libvirt call that never
returns, a deadlock) stops the pings and systemd restarts the agent, instead of a timer
thread pinging on regardless.
"""

from __future__ import annotations

import structlog

from handler.agent.worker_pulse import WorkerPulse
from handler.ops.heartbeat import Heartbeat

log = structlog.get_logger("qat_handler.liveness")


class Liveness:
    def __init__(self, pulse: WorkerPulse, heartbeat: Heartbeat, stall_seconds: float = 30.0) -> None:
        self._pulse = pulse
        self._heartbeat = heartbeat
        self._stall_seconds = stall_seconds
        self._reported: tuple[str, ...] = ()

    @property
    def stall_seconds(self) -> float:
        """A worker silent for this long counts as stalled: half of WatchdogSec= under systemd."""
        return self._heartbeat.period or self._stall_seconds

    def tick(self) -> bool:
        """One turn of the main loop; True if the watchdog was pinged."""
        stalled = tuple(self._pulse.stalled(within=self.stall_seconds))
        if stalled:
            if stalled != self._reported:
                log.error("reconcile workers stalled; withholding the watchdog ping", workers=list(stalled))
                self._reported = stalled
            return False
        if self._reported:
            log.info("reconcile workers turning again")
            self._reported = ()
        return self._heartbeat.beat()

    def alive(self) -> tuple[bool, str]:
        """The /healthz answer."""
        stalled = self._pulse.stalled(within=self._stall_seconds)
        if stalled:
            return False, f"reconcile workers stalled: {', '.join(stalled)}"
        return self._heartbeat.check(self._stall_seconds)
