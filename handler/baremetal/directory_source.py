"""The bare-metal stand-in for the API server: a directory of VMI manifests, watched live.

``<stem>.yaml`` (or .yml/.json) is a VMI; ``<stem>.env`` beside it holds its device
environment. Each file is read on its own, so one bad manifest never blocks another.

A file is read once it is complete: when its writer closes it or it is renamed into place,
never half-written (a valid first half of a manifest would start a guest without the devices
its second half asks for). A new manifest that asks for devices and has no env file yet waits
a moment for it, since ``cp vmi.yaml vmi.env`` lands the manifest first and the allocator
would otherwise pick VFs that the env file names differently.

A manifest that vanishes counts as removed once it has stayed away a moment: editors save by
renaming the old file away and writing a new one, and the guest must not get a shutdown in
between. An env file that vanishes likewise, or the allocator would give a guest that is not
running yet other VFs than the env file names.

The watch can miss changes (the kernel's inotify queue overflows in a large burst; some file
systems send no events at all), so ``sweep()``, at every resync, compares each manifest and
env file with what was read and reads again those that changed, came or went.

The directory is followed by its name: replaced (renamed over, removed and made again, a
symlink re-pointed), it is read again whole. While no directory is there, the VMIs stay as
they were: a directory swapped in two renames must not shut every guest down in between.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from handler.agent.deadline_timer import DeadlineTimer
from handler.baremetal.manifest_entry import ManifestEntry, read_entry
from handler.baremetal.manifest_file import (
    ENV_SUFFIX,
    MANIFEST_SUFFIXES,
    env_path_for,
    is_manifest,
    is_manifest_name,
)
from handler.core.desired import Desired
from handler.ops.directory_watch import Change, DirectoryWatch
from handler.ops.file_version import FileVersion, file_version

log = structlog.get_logger("qat_handler.manifests")

SETTLE_SECONDS = 1.0
"""A file created or written to but not closed (a symlink made, a chmod, a writer that never
closes) is read once it has been left alone this long. A writer's close reads it at once."""
ENV_WAIT_SECONDS = 1.0
"""How long a new manifest that asks for devices waits for its env file before the allocator
picks VFs for it."""
_Signature = tuple[FileVersion | None, FileVersion | None]
"""A manifest's version and its env file's, None where there is no file."""

REMOVAL_SETTLE_SECONDS = 1.0
"""How long a manifest (or its env file) must stay away before that counts (vim, for one,
renames the file away before writing the new one)."""


class DirectorySource:
    def __init__(
        self,
        directory: Path,
        on_change: Callable[[str], None] = lambda _key: None,
        clock: Callable[[], float] = time.monotonic,
        settle_seconds: float = SETTLE_SECONDS,
        env_wait_seconds: float = ENV_WAIT_SECONDS,
        removal_settle_seconds: float = REMOVAL_SETTLE_SECONDS,
    ) -> None:
        self.directory = directory
        self.on_change = on_change
        self._clock = clock
        self._settle_seconds = settle_seconds
        self._env_wait_seconds = env_wait_seconds
        self._removal_settle_seconds = removal_settle_seconds
        self._lock = threading.RLock()
        self._entries: dict[str, ManifestEntry] = {}
        self._key_of: dict[Path, str] = {}
        self._shadowed: dict[str, set[Path]] = {}
        """Duplicate manifests waiting for the key's owner file to go away."""
        self._touched: dict[Path, float] = {}
        """Files changed but not closed, with the time of their last change."""
        self._env_wait: dict[Path, float] = {}
        """New manifests held for their env file, with when the wait ends."""
        self._leaving: dict[Path, float] = {}
        """Known manifests found missing, with when they count as removed if still away."""
        self._read_as: dict[Path, _Signature] = {}
        """Each manifest as it was when last read: its file and its env file, for sweep()."""
        self.timer = DeadlineTimer(clock, self._due, name="manifest-settle")
        """Fires for held and settling files; tests on a fake clock call its fire_due()."""
        self._watch = DirectoryWatch(directory, self._path_changed, on_replaced=self._directory_replaced)

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
        present = self._manifest_paths()
        if present is None:
            self._directory_replaced(False)
            return
        for path in present:
            self.reload(path)
        present_set = set(present)
        with self._lock:
            gone = [path for path in self._key_of if path not in present_set]
        for path in gone:
            self.reload(path)

    def reload(self, path: Path, arriving: bool = False) -> None:
        """Read ``path`` and store what it asks for. ``arriving``: the watch saw it change, so a
        new manifest without its env file may be held for it (a scan never holds anything)."""
        changed: list[str] = []
        with self._lock:
            old_key = self._key_of.get(path)
            self._read_as[path] = _signature(path)  # taken first: a write after it shows at the next sweep
            entry = read_entry(path, old_key)
            if entry is not None and arriving and old_key is None and self._held_for_env(entry):
                return
            if old_key is not None and self._left(old_key, entry) and self._held_for_return(path):
                return
            self._env_wait.pop(path, None)
            self._leaving.pop(path, None)
            for waiting in self._shadowed.values():
                waiting.discard(path)
            if entry is None:  # the file is gone
                self._read_as.pop(path, None)
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
        if holder is not None and holder.path != entry.path and holder.path in self._leaving:
            # The file that held the key is gone and waits only to be sure: a rename (mv a.yaml
            # b.yaml). The new file takes the key over at once; it is no duplicate.
            self._leaving.pop(holder.path)
            self._key_of.pop(holder.path, None)
            self._read_as.pop(holder.path, None)
            holder = None
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

    def _held_for_env(self, entry: ManifestEntry) -> bool:
        if not entry.desired.allocate:  # it has its env file, or asks for no devices
            return False
        until = self._env_wait.get(entry.path)
        if until is None:
            until = self._env_wait[entry.path] = self._clock() + self._env_wait_seconds
            log.info(
                "manifest waits for its env file", vmi=entry.key, file=entry.path.name, seconds=self._env_wait_seconds
            )
        if self._clock() >= until:
            log.info("no env file came; the agent allocates VFs", vmi=entry.key, file=entry.path.name)
            return False
        self.timer.arm(str(entry.path), until)
        return True

    def _left(self, old_key: str, entry: ManifestEntry | None) -> bool:
        """Whether a known manifest, or the env file it had, has gone: the manifest file is
        missing, or it now leaves its VFs to the allocator where before it did not."""
        if entry is None:
            return True
        before = self._entries.get(old_key)
        return entry.desired.allocate and before is not None and not before.desired.allocate

    def _held_for_return(self, path: Path) -> bool:
        """Whether a known manifest that has gone, or lost its env file, is still given time
        for the file to come back (vim saves by renaming the file away, then writing anew)."""
        now = self._clock()
        until = self._leaving.setdefault(path, now + self._removal_settle_seconds)
        if now >= until:
            return False
        self.timer.arm(str(path), until)
        return True

    def _store_heir(self, key: str) -> list[str]:
        """The first duplicate that waited for ``key``, now that its owner file is gone or renamed."""
        heir = min(self._shadowed.pop(key, set()), default=None)
        entry = read_entry(heir, None) if heir is not None else None
        return self._store(entry, None) if entry is not None else []

    def manifest_for(self, changed: Path) -> list[Path]:
        """The manifest(s) a changed file affects: itself, or the manifests sharing an env file's
        stem that have been read whole (or wait for it) and are not being written right now. A
        manifest that is still being written is read at its own close, never on its env file's."""
        if changed.suffix != ENV_SUFFIX:
            return [changed] if is_manifest(changed) else []
        with self._lock:
            candidates = [changed.with_suffix(suffix) for suffix in MANIFEST_SUFFIXES]
            return [m for m in candidates if (m in self._key_of or m in self._env_wait) and m not in self._touched]

    # -- watching ---------------------------------------------------------------------
    def start(self) -> None:
        self.timer.start()
        self._watch.start()

    def stop(self) -> None:
        self._watch.stop()
        self.timer.close()

    def sweep(self) -> None:
        """Read again what changed, came or went without the watch saying so; files the watch
        or a wait already has in hand are left to it."""
        try:
            present = self._manifest_paths()
        except OSError as error:
            log.error("VMI directory cannot be listed", directory=str(self.directory), error=str(error))
            return
        if present is None:
            return  # the name-following watch says so, and keeps the VMIs as they are
        with self._lock:
            busy = self._touched.keys() | self._env_wait.keys() | self._leaving.keys()
            read_as = {p: self._read_as.get(p) for p in present if p not in busy}
            present_set = set(present)
            gone = [p for p in self._key_of if p not in present_set and p not in busy]
        # The files are looked at outside the lock: the watch's own reads need not wait on them.
        missed = [p for p, version in read_as.items() if version != _signature(p)] + gone
        if missed:
            log.warning(
                "manifest changes the directory watch missed; reading them",
                files=len(missed),
                first=[p.name for p in missed[:5]],
            )
        for path in missed:
            self.reload(path, arriving=True)

    def _manifest_paths(self) -> list[Path] | None:
        """The manifests in the directory now, sorted; None when the name leads to no directory."""
        try:
            listed = os.listdir(self.directory)
        except (FileNotFoundError, NotADirectoryError):
            return None
        # One directory: by name is by path.
        return [self.directory / name for name in sorted(listed) if is_manifest_name(name)]

    def rescan(self) -> None:
        """SIGHUP: read every manifest again, and make sure the watch is on the directory the
        name leads to now."""
        self._watch.check_name()
        self.scan()

    def _directory_replaced(self, present: bool) -> None:
        if not present:
            log.warning(
                "VMI directory is gone; its VMIs stay as they are until it is back",
                directory=str(self.directory),
                fix=f"create {self.directory} again, or point --vmi-dir at the manifests' new place",
            )
            return
        log.warning("VMI directory replaced; reading it again", directory=str(self.directory))
        self.scan()

    def _path_changed(self, path: Path, change: Change) -> None:
        if change is Change.PARTIAL:  # read when its writer closes it, or once it settles
            now = self._clock()
            with self._lock:
                self._touched[path] = now
            self.timer.arm(str(path), now + self._settle_seconds)
            return
        with self._lock:
            self._touched.pop(path, None)
        self._read_changed(path)

    def _read_changed(self, path: Path) -> None:
        for manifest in self.manifest_for(path):
            self.reload(manifest, arriving=True)

    def _due(self, name: str) -> None:
        path = Path(name)
        with self._lock:
            touched = self._touched.get(path)
            if touched is not None and self._clock() < touched + self._settle_seconds:
                self.timer.arm(name, touched + self._settle_seconds)  # changed again since
                return
            self._touched.pop(path, None)
            held = path in self._env_wait
            leaving = path in self._leaving
        if touched is not None:
            self._read_changed(path)
        elif held:
            self.reload(path, arriving=True)
        elif leaving:
            self.reload(path)


def _signature(manifest: Path) -> _Signature:
    return file_version(manifest), file_version(env_path_for(manifest))
