"""Which version of a file is there now, to tell later whether it changed without anyone
saying so (a watch that missed an event): its inode, size and modification time."""

from __future__ import annotations

import os
from pathlib import Path

FileVersion = tuple[int, int, int]
"""(st_ino, st_size, st_mtime_ns): a rename over the file changes the inode, a write the rest."""


def file_version(path: Path, follow_symlinks: bool = True) -> FileVersion | None:
    """The file's version now, or None when there is no file."""
    try:
        info = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns
