"""The host root, resolved once per settings, and what every read of the host under it shares."""

from __future__ import annotations

import os
from pathlib import Path


class HostRoot:
    """The host root's real path, resolved once (per settings: SIGHUP makes a new one), and the
    real paths of directories found under it, for every ``HostTree`` made from it to share."""

    def __init__(self, host_root: Path) -> None:
        self.path = host_root
        self.root = os.path.realpath(host_root)
        self.prefix = self.root.rstrip("/") + "/"
        self.dirs: dict[str, str] = {self.root: self.root}
        """Shared by the trees of every worker: a dict's single get and set are atomic."""

    def forget_dirs(self) -> None:
        """Start over (one assignment: trees in flight keep the dict they have)."""
        self.dirs = {self.root: self.root}
