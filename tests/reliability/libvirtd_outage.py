"""What a guest can do while the private libvirtd (tests/support/private_libvirtd.py) is down:
power itself off through QEMU's own monitor socket, which nobody holds while libvirtd is away
(libvirtd finds it off when it reconnects to QEMU); and the agent's probes meanwhile."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request

from tests.reliability.chaos_world import ACPI_POWER_OFF
from tests.support.private_libvirtd import PrivateLibvirtd


def power_off_behind_libvirt(uri: str, domain_name: str) -> None:
    """The guest's own power-off (ACPI PM1a write), sent over QEMU's QMP socket directly."""
    sockets = list((PrivateLibvirtd.serving(uri).scratch / "lib" / "qemu").glob(f"domain-*-{domain_name}/monitor.sock"))
    assert len(sockets) == 1, f"no single monitor socket for {domain_name}: {sockets}"
    folder = os.open(sockets[0].parent, os.O_PATH)  # the full path is too long for AF_UNIX
    try:
        qmp = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        qmp.settimeout(10)
        qmp.connect(f"/proc/self/fd/{folder}/monitor.sock")
    finally:
        os.close(folder)
    with qmp:
        reader = qmp.makefile("r")
        reader.readline()  # greeting
        for command in (
            {"execute": "qmp_capabilities"},
            {"execute": "human-monitor-command", "arguments": {"command-line": ACPI_POWER_OFF}},
        ):
            qmp.sendall(json.dumps(command).encode() + b"\n")
            while "return" not in (reply := json.loads(reader.readline())):
                if "error" in reply:
                    raise AssertionError(f"QMP {command['execute']}: {reply['error']}")


def probe(port: int) -> tuple[float | None, int]:
    """(qat_handler_libvirt_connected, /readyz status) from the agent's health server."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None, 0
    value = next(
        (float(line.split()[-1]) for line in text.splitlines() if line.startswith("qat_handler_libvirt_connected ")),
        None,
    )
    try:
        status = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError:
        status = 0
    return value, status


def wait_probe(port: int, connected: float, ready: int, timeout: float) -> float:
    """Seconds until the metric and /readyz both say so; raises AssertionError with the last seen."""
    started = time.monotonic()
    last: tuple[float | None, int] = (None, 0)
    while time.monotonic() - started < timeout:
        last = probe(port)
        if last == (connected, ready):
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"after {timeout} s the agent says connected={last[0]}, /readyz {last[1]}")
