"""The launcher: the VMI pod's entrypoint, which hands the pod's devices to the node agent.

Device plugins put VF addresses only into this container's environment. The launcher
copies the device variables into its handoff slot, then stays up as the pod's main
process. On SIGTERM it asks the agent, through the same slot, to shut the guest down,
and holds the pod until the agent reports the guest off (or its own grace runs out).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from handler.core.bdf import require_bdf
from handler.core.device_env import is_device_var
from handler.core.grace_margins import launcher_grace
from handler.core.handoff import (
    HANDOFF_FILE,
    REPORT_FILE,
    AgentReport,
    Handoff,
    handoff_to_json,
    report_from_json,
)
from handler.core.refusal import Refused
from handler.ops.atomic_file import write_atomically
from handler.ops.stop_signals import StopSignals

log = structlog.get_logger("qat_handler.launcher")


@dataclass(frozen=True, slots=True)
class LauncherSettings:
    slot_dir: Path
    namespace: str
    name: str
    vmi_uid: str
    pod_uid: str
    grace_seconds: int
    poll_seconds: float = 0.2


def device_environment(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The device plugin's variables from this process's environment, each checked as the agent will."""
    found = tuple(sorted((k, v) for k, v in environ.items() if is_device_var(k)))
    for name, value in found:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                require_bdf(part, name)
            except Refused as refused:
                # Handed over anyway: the agent refuses it and says so in the VMI's status.
                log.warning(refused.refusal.line(), reason=refused.refusal.reason)
    return found


class Launcher:
    def __init__(self, settings: LauncherSettings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.handoff = Handoff(
            namespace=settings.namespace,
            name=settings.name,
            vmi_uid=settings.vmi_uid,
            pod_uid=settings.pod_uid,
            env=device_environment(environ),
            grace_seconds=settings.grace_seconds,
        )
        self._signals = StopSignals()
        self._stop = self._signals.event

    def run(self) -> int:
        # Handlers first: once the handoff is out the agent may start the guest, and a SIGTERM
        # from then on must ask it to stop the guest rather than kill the launcher outright.
        self._signals.install()
        self.settings.slot_dir.mkdir(parents=True, exist_ok=True)
        self._write(self.handoff)
        log.info(
            "handoff written",
            vmi=self.handoff.key,
            pod_uid=self.handoff.pod_uid,
            devices=[name for name, _ in self.handoff.env],
        )
        while not self._stop.wait(1.0):
            pass
        self._log_signals(0)
        return self._stop_guest()

    def _log_signals(self, logged: int) -> int:
        """Log the signals that arrived since the first ``logged``; how many are logged now."""
        received = self._signals.received
        for count, name in enumerate(received[logged:], start=logged + 1):
            log.info("stop signal received", signal=name, count=count)
        return len(received)

    def _stop_guest(self) -> int:
        self._write(replace(self.handoff, stop_requested=True))
        limit = launcher_grace(self.settings.grace_seconds)
        deadline = time.monotonic() + limit
        log.info("asked the agent to shut the guest down", vmi=self.handoff.key, wait_seconds=limit)
        logged = len(self._signals.received)
        while time.monotonic() < deadline:
            # A second SIGTERM does not cut the wait short: the guest is still shutting down.
            logged = self._log_signals(logged)
            report = self._read_report()
            if report is not None and report.vmi_uid == self.handoff.vmi_uid and report.guest_off:
                log.info("guest is off", vmi=self.handoff.key, phase=report.phase, message=report.message)
                return 0
            time.sleep(self.settings.poll_seconds)
        log.error(
            "the agent did not report the guest off in time; exiting before the pod's grace ends",
            vmi=self.handoff.key,
            waited_seconds=limit,
        )
        return 1

    def _read_report(self) -> AgentReport | None:
        try:
            return report_from_json(json.loads((self.settings.slot_dir / REPORT_FILE).read_text()))
        except (OSError, ValueError):
            return None

    def _write(self, handoff: Handoff) -> None:
        data = json.dumps(handoff_to_json(handoff), indent=1).encode()
        write_atomically(self.settings.slot_dir / HANDOFF_FILE, data, mode=0o644)
