"""The watchdog is fed from the reconcile loop: a stalled worker stops the pings.

A real Engine with one worker; a fake hypervisor whose lookup blocks until released
plays a libvirt call that never returns. WATCHDOG=1 datagrams are read from a real
AF_UNIX socket named by NOTIFY_SOCKET.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from handler.agent.agent import Engine, EngineSettings, StopPolicy
from handler.agent.liveness import Liveness
from handler.agent.reconciler import Reconciler
from handler.core.actions import RecordEvent
from handler.core.bdf import Bdf
from handler.core.desired import Desired, Intent
from handler.core.domain_state import ObservedDomain
from handler.core.planner import PlanSettings
from handler.core.render_settings import RenderSettings
from handler.core.status import VMIStatus
from handler.ops.heartbeat import Heartbeat
from handler.ops.sdnotify import Notifier


class WedgingHypervisor:
    """Looks up domains instantly, except while ``wedged`` is set: then the call hangs."""

    def __init__(self) -> None:
        self.wedged = threading.Event()
        self.released = threading.Event()

    def observe(self, name: str) -> ObservedDomain | None:
        if self.wedged.is_set():
            self.released.wait(30)
        return None

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
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # WatchdogSec=0.4s: ping every 0.2 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield sock
    sock.close()


def pings_during(liveness: Liveness, sock: socket.socket, seconds: float) -> int:
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        liveness.tick()
        try:
            while True:
                count += sock.recv(64).count(b"WATCHDOG=1")
        except TimeoutError:
            pass
        time.sleep(0.02)
    return count


def test_a_wedged_worker_stops_the_watchdog_and_recovery_resumes_it(notify_socket: socket.socket) -> None:
    hypervisor = WedgingHypervisor()
    reconciler = Reconciler(NoVMIs(), hypervisor, NullSink(), PlanSettings(RenderSettings()))
    engine = Engine(reconciler, EngineSettings(workers=1))
    engine.start()
    liveness = Liveness(engine.pulse, Heartbeat(Notifier()), stall_seconds=0.3)
    try:
        assert liveness.stall_seconds == pytest.approx(0.2)
        assert pings_during(liveness, notify_socket, 1.0) >= 3  # healthy: about one ping per 0.2 s
        hypervisor.wedged.set()
        engine.enqueue("default/stuck")
        time.sleep(0.6)  # the worker is now inside the hanging call
        assert pings_during(liveness, notify_socket, 1.0) == 0
        alive, why = liveness.alive()  # /healthz says the same
        assert alive is False and "reconcile-0" in why
        hypervisor.released.set()
        hypervisor.wedged.clear()
        assert pings_during(liveness, notify_socket, 1.0) >= 3
        assert liveness.alive()[0] is True
    finally:
        hypervisor.released.set()
        engine.stop(StopPolicy.KEEP)
