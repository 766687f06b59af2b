"""Replace a file so that readers and crashes only ever see the old or the new content."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from handler.core.port_error import PortError


def write_atomically(path: Path, data: bytes | Iterable[bytes], mode: int = 0o644) -> None:
    """``data``: the content, or its pieces in order (written as they are, never joined first)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                handle.writelines(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        directory = os.open(path.parent, os.O_RDONLY)
    except PermissionError:
        # A launcher may write into a slot it can enter but not list (mode 1733); the file
        # itself is already synced, only the rename's durability is left to the kernel.
        return
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


class StateNotWritable(PortError):
    """A file of the agent's state could not be replaced (a full disk, a read-only mount)."""

    reason = "StateNotWritable"


def write_state_file(path: Path, data: bytes | Iterable[bytes], mode: int = 0o644) -> None:
    """``write_atomically``, failing with one line that names the file and the fix: the
    reconcile that needed the write reports it and tries again later, as for libvirt's errors."""
    try:
        write_atomically(path, data, mode)
    except OSError as error:
        raise StateNotWritable(
            f"{path} could not be written ({error.strerror or error}); "
            f"free space on its file system, or make {path.parent} writable"
        ) from None
