"""Watching a child process from outside: its peak RSS, whether it is busy, and its status file."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")
_RUNNING = re.compile(rb'"phase":\s*"Running"')


def peak_rss_kib(pid: int) -> int:
    """VmHWM: the process's peak resident set so far, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used (all its threads), with that of its live
    children (the agent's libvirt event listener), so work moved to a child is still counted."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / TICK
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += cpu_seconds(int(child))
    return total


def wait_cpu_idle(pid: int, quiet: float = 0.3, timeout: float = 30.0) -> None:
    """Return once the process has used no CPU for ``quiet`` seconds (or at ``timeout``)."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpu_seconds(pid)
        if now == last:
            return
        last = now


def stop(child: subprocess.Popen[Any], timeout: float = 30.0) -> int:
    """SIGTERM, then SIGKILL if it does not go; returns the exit status."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return child.returncode


class StatusFile:
    """The agent's durable status file, re-read each time it is replaced (atomic rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None

    def changed(self, at_least: int = 0) -> dict[str, Any] | None:
        """The VMIs section if the file was replaced since the last call (and holds at least
        ``at_least`` Running phases), else None."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp == self._seen:
            return None
        self._seen = stamp
        try:
            text = self.path.read_bytes()
            if len(_RUNNING.findall(text)) < at_least:
                return None
            vmis = json.loads(text).get("vmis")
        except (OSError, ValueError):
            self._seen = None
            return None
        return vmis if isinstance(vmis, dict) else {}

    def wait_running(self, keys: set[str], child: subprocess.Popen[Any], timeout: float) -> float:
        """Poll (every 2 ms) until every key is Running on disk; the monotonic time it was seen.

        A replaced file is parsed only once it holds enough Running phases, so that the
        watcher does not take CPU from the agent it is timing.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            vmis = self.changed(at_least=len(keys))
            if vmis is not None and all(vmis.get(key, {}).get("phase") == "Running" for key in keys):
                return time.monotonic()
            if child.poll() is not None:
                raise RuntimeError(f"the agent exited with status {child.returncode} before all VMIs ran")
            time.sleep(0.002)
        vmis = self.changed() or {}
        running = sum(1 for key in keys if vmis.get(key, {}).get("phase") == "Running")
        raise TimeoutError(f"only {running} of {len(keys)} VMIs Running after {timeout:.0f} s")


class NotifySocket:
    """A stand-in for systemd's notification socket: children get ``NOTIFY_SOCKET`` pointing here."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))

    def env(self) -> dict[str, str]:
        return {**os.environ, "NOTIFY_SOCKET": str(self.path)}

    def wait_for(self, line: str, child: subprocess.Popen[Any], timeout: float) -> float:
        """The monotonic time a datagram holding ``line`` (e.g. ``READY=1``) arrived."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self._sock.settimeout(min(left, 0.5))
            try:
                message = self._sock.recv(4096).decode(errors="replace")
            except TimeoutError:
                if child.poll() is not None:
                    raise RuntimeError(f"the agent exited with status {child.returncode}") from None
                continue
            if line in message.splitlines():
                return time.monotonic()
        raise TimeoutError(f"no {line} from the agent within {timeout:.0f} s")

    def close(self) -> None:
        self._sock.close()
        self.path.unlink(missing_ok=True)
