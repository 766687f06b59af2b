"""sd_notify against a real AF_UNIX datagram socket standing in for systemd's."""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator

import pytest

from handler.ops.heartbeat import Heartbeat
from handler.ops.sdnotify import Notifier
from tests.support.fake_clock import FakeClock


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A bound datagram socket with NOTIFY_SOCKET pointing at it (a short dir: sun_path is 108 bytes)."""
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    with (
        tempfile.TemporaryDirectory(prefix="sdn", dir="/tmp") as tmp,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
    ):
        path = os.path.join(tmp, "notify")
        sock.bind(path)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        yield sock


def received(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on the socket, without blocking."""
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096))
    except BlockingIOError:
        return out
    finally:
        sock.settimeout(2)


def test_each_call_sends_exactly_its_assignments(manager: socket.socket) -> None:
    notifier = Notifier()
    assert notifier.enabled
    assert notifier.ready()
    assert notifier.status("syncing\n3 VMIs")
    assert notifier.watchdog()
    assert notifier.stopping()
    assert notifier.extend_timeout(12.5)
    assert received(manager) == [
        b"READY=1",
        b"STATUS=syncing 3 VMIs",
        b"WATCHDOG=1",
        b"STOPPING=1",
        b"EXTEND_TIMEOUT_USEC=12500000",
    ]


def test_reloading_carries_the_monotonic_clock(manager: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier().reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    (message,) = received(manager)
    match = re.fullmatch(rb"RELOADING=1\nMONOTONIC_USEC=(\d+)", message)
    assert match, message
    assert before <= int(match.group(1)) <= after


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"qat-handler-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert Notifier().ready()
        assert sock.recv(4096) == b"READY=1"


@pytest.mark.parametrize("value", [None, "", "vsock:2:1234", "relative/path"])
def test_without_a_usable_socket_every_call_is_a_quiet_no_op(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    notifier = Notifier()
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()


def test_a_socket_nobody_listens_on_fails_soft(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/qat-handler/notify")
    notifier = Notifier()
    assert notifier.enabled
    assert not notifier.ready()


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("30000000", "self", 30.0),
        ("500000", None, 0.5),
        ("30000000", "1", None),  # meant for another process (we are never PID 1 under pytest)
        ("0", None, None),
        ("-5", None, None),
        ("soon", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "self" else value)
    assert Notifier().watchdog_interval() == expected


def test_heartbeat_forwards_at_most_every_half_interval(
    manager: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    clock = FakeClock()
    heart = Heartbeat(Notifier(), clock)
    assert heart.period == 5.0
    pinged = []
    for t in (0.0, 1.0, 4.9, 5.0, 6.0, 9.9, 10.1, 10.2):
        clock.now = 100.0 + t
        pinged.append(heart.beat())
    assert pinged == [True, False, False, True, False, False, True, False]
    assert received(manager) == [b"WATCHDOG=1"] * 3


def test_heartbeat_without_watchdog_sends_nothing_but_still_keeps_time(manager: socket.socket) -> None:
    clock = FakeClock()
    heart = Heartbeat(Notifier(), clock)
    assert heart.period is None
    assert heart.age() is None
    assert not heart.beat()
    clock.now += 7
    assert heart.age() == 7
    assert received(manager) == []


def test_heartbeat_check_for_healthz(manager: socket.socket) -> None:
    clock = FakeClock()
    heart = Heartbeat(Notifier(), clock)
    assert heart.check(max_age=60) == (True, "starting")
    clock.now += 61
    ok, reason = heart.check(max_age=60)
    assert not ok
    assert "has not run" in reason
    heart.beat()
    assert heart.check(max_age=60) == (True, "ok")
    clock.now += 90
    ok, reason = heart.check(max_age=60)
    assert not ok
    assert "90s ago" in reason
