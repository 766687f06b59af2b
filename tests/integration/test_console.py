"""`qat-handler console` as a person uses it: in a real terminal (tmux), typing into a real
TCG guest's shell and reading its answer, detaching with Ctrl-]; and its one-line errors."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agent_harness import NAMESPACE, Workspace, domain_name, key_of, wait_until
from tests.integration.guest_fixtures import StartAgent, agents, ws  # noqa: F401
from tests.support.guest_image import BOOT_MARKER, ensure_guest_image, wait_for_serial

pytestmark = [pytest.mark.libvirtd, pytest.mark.guest]

REPO = Path(__file__).resolve().parents[2]
BOOT_TIMEOUT = 120.0
ANSWER_TIMEOUT = 60.0


class Terminal:
    """A tmux session on its own server socket, so nothing else of tmux is touched."""

    def __init__(self) -> None:
        self.socket = f"qhc-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self, command: str) -> None:
        self.tmux("new-session", "-d", "-s", "console", "-x", "160", "-y", "40", command)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "console")

    def wait_for(self, text: str, timeout: float = ANSWER_TIMEOUT) -> None:
        wait_until(lambda: f"{text!r} on the terminal:\n{self.screen()}", lambda: text in self.screen(), timeout, 0.2)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30, check=False)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal()
    yield term
    term.close()


def console_command(*args: str) -> str:
    argv = [sys.executable, "-m", "handler", "console", *args]
    return f"cd {shlex.quote(str(REPO))} && {shlex.join(argv)}; echo CONSOLE-EXIT=$?; sleep 600"


def console_once(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "handler", "console", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL)


def test_attach_type_read_detach_then_errors(
    ws: Workspace,  # noqa: F811
    agents: StartAgent,  # noqa: F811
    terminal: Terminal,
    libvirt_conn: Any,
) -> None:
    ws.add_vmi("console", ensure_guest_image("interactive"), grace=10)
    agent = agents()
    wait_for_serial(ws.serial_log("console"), BOOT_MARKER, BOOT_TIMEOUT)

    terminal.start(console_command(key_of("console"), "--connect", "qemu:///system"))
    terminal.wait_for("Escape character is ^]")
    terminal.tmux("send-keys", "-t", "console", "echo console-says-$((6*7))", "Enter")
    terminal.wait_for("console-says-42")  # only the guest's shell can have computed it
    second = console_once(key_of("console"), "--connect", "qemu:///system")
    assert second.returncode == 1 and second.stderr.count("\n") == 1, second.stderr
    assert "use --force" in second.stderr, "one session at a time"
    terminal.tmux("send-keys", "-t", "console", "C-]")
    terminal.wait_for("CONSOLE-EXIT=0")
    assert libvirt_conn.lookupByName(domain_name("console")).isActive(), "detaching leaves the guest running"
    wait_until("the typed command in the serial log", lambda: "console-says-42" in ws.serial("console"), 30)

    terminal.tmux("kill-session", "-t", "console")
    terminal.start(console_command(key_of("console"), "--connect", "qemu:///system"))
    terminal.wait_for("Escape character is ^]")
    forced = console_once(key_of("console"), "--connect", "qemu:///system", "--force")
    assert forced.returncode == 0, forced.stderr  # took over, then its empty stdin ended it
    terminal.wait_for("another session took it with --force")
    terminal.wait_for("CONSOLE-EXIT=0")

    unknown = console_once(f"{NAMESPACE}/no-such-vmi", "--connect", "qemu:///system")
    assert unknown.returncode == 1
    assert unknown.stderr.count("\n") == 1 and "no guest for this VMI" in unknown.stderr
    assert "fix:" in unknown.stderr and "Traceback" not in unknown.stderr

    agent.signal()  # --on-stop shutdown: the guest is powered off, its domain stays defined
    assert agent.wait_exit(60) == 0
    stopped = console_once(key_of("console"), "--connect", "qemu:///system")
    assert stopped.returncode == 1
    assert stopped.stderr.count("\n") == 1 and "the guest is not running" in stopped.stderr
