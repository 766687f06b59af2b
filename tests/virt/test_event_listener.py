"""Events of a daemon heard by a listener process, on a libvirtd of the test's own.

Its test driver (``test+unix:///default``) is shared by every connection to that daemon, so the
listener hears what the connection's calls do. Checked: the events arrive; the agent's own
connection stays off libvirt's event loop; the listener outlives SIGTERM but not its agent,
even a ``kill -9`` one; a dead listener makes the connection reopen with a new one; an
unreachable daemon is one error with its fix and leaves no process behind.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from handler.virt import event_listener
from handler.virt.connection import Connection
from handler.virt.domain_events import DomainEvent
from handler.virt.errors import ErrorKind, VirtError
from handler.virt.event_listener import listens_apart
from tests.support.polling import wait_until
from tests.support.private_libvirtd import private_libvirtd

pytestmark = pytest.mark.libvirtd
WAIT = 30.0
XML = "<domain type='test'><name>{name}</name><memory>65536</memory><os><type>hvm</type></os></domain>"


@pytest.fixture(scope="module")
def daemon_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with private_libvirtd(tmp_path_factory.mktemp("libvirtd")) as daemon:
        yield "test+unix:///default?socket=" + daemon.uri.split("socket=", 1)[1]


class Heard:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[DomainEvent] = []

    def __call__(self, event: DomainEvent) -> None:
        with self._lock:
            self.events.append(event)

    def kinds(self, domain: str) -> list[str]:
        with self._lock:
            return [event.kind for event in self.events if event.domain == domain]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not reaped it yet.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def define_and_start(conn: libvirt.virConnect, name: str) -> None:
    conn.defineXML(XML.format(name=name)).create()


def remove(uri: str, name: str) -> None:
    """The test driver inside libvirtd drops its domains once its last connection closes; if
    another connection keeps it alive, the domain goes here."""
    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByName(name)
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    except libvirt.libvirtError as error:
        if error.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
    finally:
        conn.close()


def test_which_uris_listen_apart() -> None:
    assert not listens_apart("test:///default")  # in-process: nobody else sees its state
    assert listens_apart("qemu:///system")
    assert listens_apart("test+unix:///default?socket=/run/x")


def test_events_arrive_through_the_listener(daemon_uri: str) -> None:
    heard = Heard()
    connection = Connection(daemon_uri, heard)
    try:
        define_and_start(connection.get(), "heard-1")
        wait_until(
            "DEFINED and STARTED of heard-1", lambda: {"defined", "started"} <= set(heard.kinds("heard-1")), WAIT
        )
        assert connection.connected
        pid = connection.listener_pid
        assert pid is not None and alive(pid)
        # What `ps` or `systemctl status` shows for it (the README names it so).
        command = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
        assert command[1:4] == ["-m", "handler.virt.event_listener_main", daemon_uri]
    finally:
        connection.close()
        remove(daemon_uri, "heard-1")


def test_the_agents_connection_is_off_libvirts_event_loop(daemon_uri: str) -> None:
    """The point of the listener: no event loop in the agent's process for a daemon's URI."""
    code = (
        "import sys\n"
        "from handler.virt import event_loop\n"
        "from handler.virt.connection import Connection\n"
        "c = Connection(sys.argv[1], lambda e: None)\n"
        "c.get().getLibVersion()\n"
        "print(event_loop._thread is None, c.listener_pid is not None)\n"
        "c.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code, daemon_uri], capture_output=True, text=True, timeout=WAIT)
    assert out.stdout.split() == ["True", "True"], out.stdout + out.stderr


def test_the_listener_ignores_sigterm_sigint_and_sighup_and_keeps_listening(daemon_uri: str) -> None:
    heard = Heard()
    connection = Connection(daemon_uri, heard)
    try:
        conn = connection.get()
        pid = connection.listener_pid
        assert pid is not None
        for sent in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # a stop, a Ctrl-C, a hang-up
            os.kill(pid, sent)
        define_and_start(conn, "heard-2")
        wait_until("STARTED of heard-2 after the signals", lambda: "started" in heard.kinds("heard-2"), WAIT)
        assert connection.listener_pid == pid and alive(pid)
    finally:
        connection.close()
        remove(daemon_uri, "heard-2")


def test_a_dead_listener_makes_the_connection_reopen_with_a_new_one(daemon_uri: str) -> None:
    heard = Heard()
    reopened: list[bool] = []
    connection = Connection(daemon_uri, heard, lambda: reopened.append(True))
    try:
        connection.get()
        first = connection.listener_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_until("the connection to notice its listener died", lambda: not connection.connected, WAIT)
        define_and_start(connection.get(), "heard-3")
        assert reopened == [True]
        second = connection.listener_pid
        assert second is not None and second != first
        wait_until("STARTED of heard-3 through the new listener", lambda: "started" in heard.kinds("heard-3"), WAIT)
    finally:
        connection.close()
        remove(daemon_uri, "heard-3")


def test_the_listener_exits_when_its_agent_is_killed(daemon_uri: str) -> None:
    code = (
        "import sys, time\n"
        "from handler.virt.connection import Connection\n"
        "c = Connection(sys.argv[1], lambda e: None)\n"
        "c.get()\n"
        "print(c.listener_pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    agent = subprocess.Popen([sys.executable, "-c", code, daemon_uri], stdout=subprocess.PIPE, text=True)
    try:
        assert agent.stdout is not None
        listener = int(agent.stdout.readline())
        assert alive(listener)
        agent.kill()
        agent.wait(WAIT)
        wait_until(f"listener {listener} to exit after its agent's kill -9", lambda: not alive(listener), WAIT)
    finally:
        agent.kill()
        agent.wait(WAIT)


def test_an_unreachable_daemon_is_one_error_and_leaves_no_listener(tmp_path: Path) -> None:
    connection = Connection(f"test+unix:///default?socket={tmp_path}/nothing-here", lambda _e: None)
    with pytest.raises(VirtError) as raised:
        connection.get()
    assert raised.value.kind is ErrorKind.CONNECTION
    assert "fix: start libvirtd" in str(raised.value) and "\n" not in str(raised.value)
    assert connection.listener_pid is None
    assert not connection.connected


def test_a_failing_event_handler_ends_the_listener_and_the_connection_reopens(daemon_uri: str) -> None:
    """If the reader thread dies, nothing more is heard: the listener must not look alive."""

    def broken(_event: DomainEvent) -> None:
        raise RuntimeError("handler bug")

    connection = Connection(daemon_uri, broken)
    try:
        conn = connection.get()
        pid = connection.listener_pid
        assert pid is not None
        define_and_start(conn, "heard-4")
        wait_until("the connection to give up on a listener it no longer hears", lambda: not connection.connected, WAIT)
        wait_until(f"listener {pid} to exit", lambda: not alive(pid), WAIT)
        connection.get()
        assert connection.listener_pid not in (None, pid)
    finally:
        connection.close()
        remove(daemon_uri, "heard-4")


def test_a_listener_that_cannot_be_started_is_a_connection_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of processes (fork fails): one line, retried like an unreachable daemon, never a traceback."""

    def no_fork(*_args: object, **_kwargs: object) -> subprocess.Popen[str]:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(event_listener.subprocess, "Popen", no_fork)
    connection = Connection("test+unix:///default", lambda _e: None)
    with pytest.raises(VirtError) as raised:
        connection.get()
    assert raised.value.kind is ErrorKind.CONNECTION
    assert "cannot start the event listener: Resource temporarily unavailable" in str(raised.value)
    assert not connection.connected
