"""The libvirt connection: a connection-class failure drops it, and reopening backs off.

libvirt.open is replaced by a fake that hands out fake connections, and the connection
runs on a fake clock, so the backoff is checked exactly. The real outage (libvirtd
stopped and started under a running agent) is in tests/integration/test_libvirtd_restart.py.
"""

from __future__ import annotations

import itertools
from typing import Any

import libvirt
import pytest

from handler.virt import connection as connection_module
from handler.virt.connection import RECONNECT, Connection
from handler.virt.errors import ErrorKind, VirtError
from handler.virt.hypervisor import LibvirtHypervisor
from tests.support.fake_clock import FakeClock


def libvirt_error(code: int, domain: int = libvirt.VIR_FROM_NONE, message: str = "boom") -> libvirt.libvirtError:
    error = libvirt.libvirtError(message)
    error.err = (code, domain, message, 2, None, None, None, 0, 0)
    return error


class FakeConn:
    def __init__(self, serial: int) -> None:
        self.serial = serial
        self.alive = True
        self.fail_with: libvirt.libvirtError | None = None
        self.closed = False

    def isAlive(self) -> int:
        return 1 if self.alive else 0

    def registerCloseCallback(self, *_args: Any) -> None: ...
    def domainEventRegisterAny(self, *_args: Any) -> int:
        return 1

    def close(self) -> int:
        self.closed = True
        return 0

    def listAllDomains(self, _flags: int) -> list[Any]:
        if self.fail_with is not None:
            raise self.fail_with
        return []


class Libvirtd:
    """Stands in for libvirt.open: up or down, and every connection it handed out."""

    def __init__(self) -> None:
        self.up = True
        self.opened: list[FakeConn] = []
        self.attempts = 0

    def open(self, _uri: str) -> FakeConn:
        self.attempts += 1
        if not self.up:
            raise libvirt_error(libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_RPC, "Failed to connect socket")
        conn = FakeConn(len(self.opened))
        self.opened.append(conn)
        return conn


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> Libvirtd:
    fake = Libvirtd()
    monkeypatch.setattr(connection_module.libvirt, "open", fake.open)
    return fake


def hypervisor(clock: FakeClock) -> tuple[LibvirtHypervisor, list[str]]:
    reopened: list[str] = []
    hv = LibvirtHypervisor("qemu:///system", on_reopen=lambda: reopened.append("reopened"))
    hv.connection = Connection(
        "qemu:///system", lambda _e: None, lambda: reopened.append("reopened"), clock, listen_apart=False
    )
    return hv, reopened


@pytest.mark.parametrize(
    ("code", "domain"),
    [
        (libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_QEMU),  # the daemon's own failure, passed on
        (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_FROM_QEMU),
    ],
)
def test_other_failures_keep_the_connection(daemon: Libvirtd, code: int, domain: int) -> None:
    hv, reopened = hypervisor(FakeClock())
    hv.connect()
    daemon.opened[0].fail_with = libvirt_error(code, domain)
    with pytest.raises(VirtError) as raised:
        hv.list_managed()
    assert raised.value.kind is not ErrorKind.CONNECTION
    daemon.opened[0].fail_with = None
    hv.list_managed()
    assert len(daemon.opened) == 1 and not daemon.opened[0].closed and reopened == []


@pytest.mark.parametrize(
    ("code", "domain"),
    [
        (libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_FROM_NONE),
        (libvirt.VIR_ERR_INVALID_CONN, libvirt.VIR_FROM_NONE),
        (libvirt.VIR_ERR_RPC, libvirt.VIR_FROM_RPC),
        (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_RPC),  # "End of file while reading data"
        (libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_RPC),  # "client socket is closed" (after a restart)
    ],
)
def test_a_connection_class_failure_drops_the_connection(daemon: Libvirtd, code: int, domain: int) -> None:
    """Even with no close callback from libvirt (it may never come), the next call reconnects."""
    hv, reopened = hypervisor(FakeClock())
    hv.connect()
    first = daemon.opened[0]
    first.fail_with = libvirt_error(code, domain)
    with pytest.raises(VirtError) as raised:
        hv.list_managed()
    assert raised.value.kind is ErrorKind.CONNECTION and raised.value.reason == "LibvirtUnavailable"
    assert first.closed and hv.connection.connected is False
    assert hv.list_managed() == []
    assert len(daemon.opened) == 2 and reopened == ["reopened"], "reopened at once, and the agent told to resync"


def test_a_dead_connection_is_replaced_on_the_next_call(daemon: Libvirtd) -> None:
    hv, reopened = hypervisor(FakeClock())
    hv.connect()
    daemon.opened[0].alive = False  # libvirt's keepalive noticed; no call has failed yet
    assert hv.connection.connected is False
    hv.list_managed()
    assert len(daemon.opened) == 2 and reopened == ["reopened"]


def test_reopening_backs_off_while_libvirtd_is_down(daemon: Libvirtd) -> None:
    clock = FakeClock()
    hv, reopened = hypervisor(clock)
    hv.connect()
    daemon.opened[0].alive = False
    daemon.up = False
    tried_at = []
    for step in range(400):  # 1/8 s steps (exact in binary) over 50 s, trying on each as the main loop does
        clock.now = 100.0 + step / 8
        attempts = daemon.attempts
        with pytest.raises(VirtError) as raised:
            hv.connect()
        assert raised.value.kind is ErrorKind.CONNECTION
        if daemon.attempts > attempts:
            tried_at.append(clock.now - 100.0)
    gaps = [b - a for a, b in itertools.pairwise(tried_at)]
    assert tried_at[0] == 0.0
    assert gaps[:6] == [RECONNECT.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert set(gaps[6:]) == {4.0}, "capped"
    daemon.up = True
    clock.now = 100.0 + tried_at[-1] + RECONNECT.max_seconds
    hv.connect()
    assert hv.connection.connected and reopened == ["reopened"]
    daemon.opened[-1].alive = False  # a new outage starts over from an immediate attempt
    hv.connect()
    assert len(daemon.opened) == 3


def test_a_spare_connection_that_died_while_idle_is_replaced(daemon: Libvirtd) -> None:
    """A libvirtd restart leaves idle spares dead; the next long call gets a fresh one."""
    connection = Connection("qemu:///system", lambda _e: None, listen_apart=False)
    with connection.spare() as first:
        pass
    first.alive = False  # type: ignore[attr-defined]
    with connection.spare() as second:
        assert second is not first and second.isAlive() == 1
    assert first.closed  # type: ignore[attr-defined]
    with connection.spare() as third:
        assert third is second, "a live spare is reused"
