"""One agent per state directory: the status file, the VF allocations and the domains it
owns (a domain's owner is its agent's state directory) are that agent's alone. A second
agent on the same directory, such as one started by hand beside the service, would act on the
same guests and hand the same VFs out twice; it is refused before it touches anything.

The lock is ``flock`` on ``<state-dir>/agent.lock``, held for the life of the process: the
kernel drops it when the process ends in any way, ``kill -9`` included, so there is never a
stale lock to clean up.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "agent.lock"


class StateDirInUse(Exception):
    """Another live process holds the state directory; the text is one line with the fix."""


def lock_state_dir(state_dir: Path) -> int:
    """Take the state directory for this process; returns the lock's file descriptor, which
    must stay open (and is not inherited by children). Raises StateDirInUse, or OSError
    when the directory cannot be made or the lock file opened."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except PermissionError:  # a lock file made by the service's own user: reading is enough to lock
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise StateDirInUse(
            f"--state-dir {state_dir} is in use by another qat-handler agent{holder}; "
            "fix: stop that agent (systemctl stop qat-handler), or give this one its own --state-dir and --vmi-dir"
        ) from None
    if _writable(fd):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {text})" if text.isdigit() else ""


def _writable(fd: int) -> bool:
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
