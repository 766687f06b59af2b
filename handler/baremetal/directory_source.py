"""The bare-metal stand-in for the API server: a directory of VMI manifests, watched live.

``<stem>.yaml`` (or .yml/.json) is a VMI; ``<stem>.env`` beside it holds its device
environment. Each file is read on its own, so one bad manifest never blocks another.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from handler.baremetal.manifest_entry import ManifestEntry, read_entry
from handler.baremetal.manifest_file import ENV_SUFFIX, MANIFEST_SUFFIXES, is_manifest, is_manifest_name
from handler.core.desired import Desired
from handler.ops.directory_watch import DirectoryWatch

log = structlog.get_logger("qat_handler.manifests")


class DirectorySource:
    def __init__(
        self,
        directory: Path,
        on_change: Callable[[str], None] = lambda _key: None,
    ) -> None:
        self.directory = directory
        self.on_change = on_change
        self._lock = threading.RLock()
        self._entries: dict[str, ManifestEntry] = {}
        self._key_of: dict[Path, str] = {}
        self._shadowed: dict[str, set[Path]] = {}
        """Duplicate manifests waiting for the key's owner file to go away."""
        self._watch = DirectoryWatch(directory, self._path_changed)

    # -- the DesiredSource port -------------------------------------------------------
    def desired(self, key: str) -> Desired | None:
        with self._lock:
            entry = self._entries.get(key)
            return entry.desired if entry else None

    def knows(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def keys(self) -> Iterable[str]:
        with self._lock:
            return list(self._entries)

    # -- reading ----------------------------------------------------------------------
    def scan(self) -> None:
        """Read every manifest now; the watcher keeps the picture current afterwards."""
        names = sorted(name for name in os.listdir(self.directory) if is_manifest_name(name))
        present = [self.directory / name for name in names]  # one directory: by name is by path
        for path in present:
            self.reload(path)
        present_set = set(present)
        with self._lock:
            gone = [path for path in self._key_of if path not in present_set]
        for path in gone:
            self.reload(path)

    def reload(self, path: Path) -> None:
        changed: list[str] = []
        with self._lock:
            old_key = self._key_of.get(path)
            for waiting in self._shadowed.values():
                waiting.discard(path)
            entry = read_entry(path, old_key)
            if entry is None:  # the file is gone
                self._key_of.pop(path, None)
                if old_key is not None and self._entries[old_key].path == path:
                    del self._entries[old_key]
                    changed.append(old_key)
                    changed += self._store_heir(old_key)
            else:
                changed += self._store(entry, old_key)
        for key in dict.fromkeys(changed):
            self.on_change(key)

    def _store(self, entry: ManifestEntry, old_key: str | None) -> list[str]:
        holder = self._entries.get(entry.key)
        if holder is not None and holder.path != entry.path:
            self._shadowed.setdefault(entry.key, set()).add(entry.path)
            log.error(
                "duplicate VMI manifest ignored",
                vmi=entry.key,
                file=entry.path.name,
                reason="DuplicateManifest",
                fix=f"{entry.key} is already defined by {holder.path.name}; rename or remove one of them",
            )
            return []
        changed = [entry.key]
        if old_key is not None and old_key != entry.key:
            self._entries.pop(old_key, None)
            changed.append(old_key)
            changed += self._store_heir(old_key)
        self._entries[entry.key] = entry
        self._key_of[entry.path] = entry.key
        if entry.desired.blocked is not None:
            log.warning(
                entry.desired.blocked.line(), vmi=entry.key, file=entry.path.name, reason=entry.desired.blocked.reason
            )
        return changed

    def _store_heir(self, key: str) -> list[str]:
        """The first duplicate that waited for ``key``, now that its owner file is gone or renamed."""
        heir = min(self._shadowed.pop(key, set()), default=None)
        entry = read_entry(heir, None) if heir is not None else None
        return self._store(entry, None) if entry is not None else []

    def manifest_for(self, changed: Path) -> list[Path]:
        """The manifest(s) a changed file affects: itself, or the manifests sharing an env file's stem."""
        if changed.suffix == ENV_SUFFIX:
            return [
                changed.with_suffix(suffix)
                for suffix in MANIFEST_SUFFIXES
                if changed.with_suffix(suffix).exists() or changed.with_suffix(suffix) in self._key_of
            ]
        return [changed] if is_manifest(changed) else []

    # -- watching ---------------------------------------------------------------------
    def start(self) -> None:
        self._watch.start()

    def stop(self) -> None:
        self._watch.stop()

    def _path_changed(self, path: Path) -> None:
        for manifest in self.manifest_for(path):
            self.reload(manifest)
