"""The watchdog is fed from the reconcile loop: a stalled worker stops the pings.

A real Engine with one worker; a fake hypervisor whose lookup blocks until released
plays a libvirt call that never returns. WATCHDOG=1 datagrams are read from a real
AF_UNIX socket named by NOTIFY_SOCKET. The engine's pulse and the heartbeat run on a
fake clock, so "one ping per period" and "stalled after the period" are exact.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from handler.agent.agent import Engine, EngineSettings
from handler.agent.liveness import Liveness
from handler.agent.reconciler import Reconciler
from handler.core.actions import RecordEvent
from handler.core.bdf import Bdf
from handler.core.desired import Desired, Intent
from handler.core.domain_state import ObservedDomain
from handler.core.planner import PlanSettings
from handler.core.render_settings import RenderSettings
from handler.core.status import VMIStatus
from handler.core.stop_policy import StopPolicy
from handler.ops.heartbeat import Heartbeat
from handler.ops.sdnotify import Notifier
from tests.support.fake_clock import FakeClock

PERIOD = 0.25
"""Seconds between watchdog pings: half of WatchdogSec=0.5s (exact in binary, so the fake clock is too)."""


class WedgingHypervisor:
    """Looks up domains instantly, except while ``wedged`` is set: then the call hangs."""

    def __init__(self) -> None:
        self.wedged = threading.Event()
        self.entered = threading.Event()
        self.released = threading.Event()

    def observe(self, name: str) -> ObservedDomain | None:
        if self.wedged.is_set():
            self.entered.set()
            self.released.wait(30)
        return None

    def observe_alone(self, name: str) -> ObservedDomain | None:
        return self.observe(name)

    def list_managed(self) -> list[ObservedDomain]:
        return []

    def foreign_devices(self, owner: str) -> dict[Bdf, str]:
        return {}

    def define(self, xml: str) -> None: ...
    def start(self, name: str) -> None: ...
    def request_shutdown(self, name: str) -> None: ...
    def destroy(self, name: str) -> None: ...
    def undefine(self, name: str) -> None: ...


class NoVMIs:
    def desired(self, key: str) -> Desired | None:
        return Desired(key, Intent.REMOVE, None)

    def knows(self, key: str) -> bool:
        return False

    def keys(self) -> Iterable[str]:
        return []


class NullSink:
    def claim(self, key: str) -> None: ...
    def last_status(self, key: str) -> VMIStatus | None:
        return None

    def write(self, key: str, status: VMIStatus) -> None: ...
    def record_event(self, key: str, event: RecordEvent) -> None: ...
    def forget(self, key: str) -> None: ...


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.01)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", str(int(2 * PERIOD * 1_000_000)))  # WatchdogSec=0.5s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield sock
    sock.close()


def pings_over(liveness: Liveness, sock: socket.socket, clock: FakeClock, ticks: int) -> int:
    """``ticks`` turns of the main loop, one watchdog period apart: WATCHDOG=1 datagrams received."""
    count = 0
    for _ in range(ticks):
        clock.now += PERIOD
        liveness.tick()
        with contextlib.suppress(TimeoutError):
            while True:
                count += sock.recv(64).count(b"WATCHDOG=1")
    return count


def wait_real(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    """For the worker thread to get somewhere (real time; never a measurement)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_wedged_worker_stops_the_watchdog_and_recovery_resumes_it(notify_socket: socket.socket) -> None:
    clock = FakeClock(1000.0)
    hypervisor = WedgingHypervisor()
    reconciler = Reconciler(NoVMIs(), hypervisor, NullSink(), PlanSettings(RenderSettings()))
    engine = Engine(reconciler, EngineSettings(workers=1), clock=clock)
    engine.start()
    liveness = Liveness(engine.pulse, Heartbeat(Notifier(), clock), stall_seconds=0.3)
    try:
        assert liveness.stall_seconds == PERIOD, "half of WatchdogSec= wins over the default"
        assert pings_over(liveness, notify_socket, clock, 5) == 5, "healthy: one ping per period"
        hypervisor.wedged.set()
        engine.enqueue("default/stuck")
        assert hypervisor.entered.wait(10), "the worker never reached the hanging call"
        assert pings_over(liveness, notify_socket, clock, 1) == 1, "busy for exactly one period is not stalled"
        clock.now += 1 / 1024
        assert pings_over(liveness, notify_socket, clock, 5) == 0
        alive, why = liveness.alive()  # /healthz says the same
        assert alive is False and "reconcile-0" in why
        hypervisor.wedged.clear()
        hypervisor.released.set()
        wait_real("the worker to finish its pass", lambda: not engine.pulse.stalled(within=PERIOD))
        assert pings_over(liveness, notify_socket, clock, 5) == 5
        assert liveness.alive()[0] is True
    finally:
        hypervisor.released.set()
        engine.stop(StopPolicy.KEEP)
