"""Watching a directory with watchdog, reduced to "this path changed, and how".

Both the manifest directory and the launcher handoff slots need the same thing: every
path an event touches (a rename touches two), and a watcher that survives whatever the
callback raises, since one bad file must never stop the watching of the others. Each
change says whether the path's content is final (closed after writing, renamed, removed)
or may still be changing (created or modified, with its writer possibly still at it).

inotify watches a directory, not a name: a directory renamed away keeps its watch, and one
made again under the same name has none. Given ``on_replaced``, the watch also follows the
name: the parent directory is watched for that name alone, and when the name is removed,
renamed, made again or re-pointed (a symlink swapped), the watch moves to whatever the name
now is and the caller is told, to read it again.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from enum import Enum
from pathlib import Path

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.inotify import InotifyObserver

log = structlog.get_logger("qat_handler.watch")

_IGNORED = ("opened", "closed_no_write")
_CHANGES = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileClosedEvent,
    DirCreatedEvent,
    DirModifiedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]
"""Asked of inotify: without it, every read of a watched file (the agent's own reads of 1,000
manifests among them) would wake the watcher twice for an event it then ignores."""


class Change(Enum):
    FINAL = "final"
    """Closed after writing, renamed in or out, or removed: what is there now is complete."""
    PARTIAL = "partial"
    """Created, written to or its attributes changed: a writer may still be at it (a closing
    writer is reported again as FINAL; a symlink, a chmod or a writer that never closes is not)."""


_FINAL_EVENTS = ("closed", "moved", "deleted")


class _Followed(Enum):
    STOPPED = "stopped"
    SAME = "same"
    """The name still leads to the watched directory."""
    REPLACED = "replaced"
    """It leads to another directory now, which is watched instead."""
    GONE = "gone"
    """It leads to no directory: nothing is watched until one is there again."""


class DirectoryWatch:
    def __init__(
        self,
        directory: Path,
        on_path: Callable[[Path, Change], None],
        recursive: bool = False,
        on_replaced: Callable[[bool], None] | None = None,
    ) -> None:
        self.directory = directory
        self.on_path = on_path
        self.recursive = recursive
        self.on_replaced = on_replaced
        """Called with whether the name is a directory now, after the watch has moved to it."""
        self._lock = threading.Lock()
        self._observer: BaseObserver | None = None
        self._watch: ObservedWatch | None = None
        self._identity: tuple[int, int] | None = None
        """(st_dev, st_ino) of the directory being watched."""
        self._name_changed = threading.Event()

    def start(self) -> None:
        # Full events: a file renamed in from another directory is a move (complete), not a
        # creation that might still be being written, which would wait to settle.
        observer = InotifyObserver(generate_full_events=True)
        observer.daemon = True
        with self._lock:
            self._observer = observer
            self._watch_directory(observer, _identity(self.directory))
        if self.on_replaced is not None:
            # Followed on a thread of its own: moving a watch from inside the observer's own
            # event dispatch would hold its lock while waiting for ours.
            threading.Thread(target=self._follow_loop, name="watch-follow", daemon=True).start()
            name = self.directory.absolute()  # not resolved: a symlink's name is what is followed
            observer.schedule(
                _NameHandler(name, self._name_changed.set), str(name.parent), recursive=False, event_filter=_CHANGES
            )
        observer.start()

    def stop(self) -> None:
        with self._lock:
            observer, self._observer = self._observer, None
        self._name_changed.set()
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

    def check_name(self) -> None:
        """Look whether the name still leads to the watched directory (SIGHUP's backstop)."""
        self._name_changed.set()

    def _follow_loop(self) -> None:
        while True:
            self._name_changed.wait()
            self._name_changed.clear()
            try:
                followed = self._follow()
                if followed is _Followed.STOPPED:
                    return
                if followed is not _Followed.SAME and self.on_replaced is not None:
                    self.on_replaced(followed is _Followed.REPLACED)
            except Exception:  # the watch on the files must outlive any failure here
                log.exception("watched directory could not be followed", directory=str(self.directory))

    def _follow(self) -> _Followed:
        with self._lock:
            observer = self._observer
            if observer is None:
                return _Followed.STOPPED
            identity = _identity(self.directory)
            if identity == self._identity:
                return _Followed.SAME
            if self._watch is not None:
                observer.unschedule(self._watch)
                self._watch = None
            # With the identity seen here: a rename after the look brings its own event, and
            # with it another look.
            self._watch_directory(observer, identity)
            return _Followed.REPLACED if identity is not None else _Followed.GONE

    def _watch_directory(self, observer: BaseObserver, identity: tuple[int, int] | None) -> None:
        self._identity = identity
        if identity is not None:
            # A directory given as a symlink is watched through it (watchdog watches the link
            # itself unless told). Never in a recursive watch, where links are others' to make.
            self._watch = observer.schedule(
                _Handler(self.on_path),
                str(self.directory),
                recursive=self.recursive,
                event_filter=_CHANGES,
                follow_symlink=not self.recursive,
            )


def _identity(directory: Path) -> tuple[int, int] | None:
    """The directory the name leads to now (through symlinks), or None if it leads to none."""
    try:
        info = os.stat(directory)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


class _NameHandler(FileSystemEventHandler):
    """Events in the parent directory that touch the watched directory's name."""

    def __init__(self, directory: Path, changed: Callable[[], None]) -> None:
        self.name = str(directory)
        self.changed = changed

    def on_any_event(self, event: FileSystemEvent) -> None:
        if self.name in (os.fsdecode(event.src_path), os.fsdecode(getattr(event, "dest_path", "") or "")):
            self.changed()


class _Handler(FileSystemEventHandler):
    def __init__(self, on_path: Callable[[Path, Change], None]) -> None:
        self.on_path = on_path

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _IGNORED:
            return
        change = Change.FINAL if event.event_type in _FINAL_EVENTS or event.is_directory else Change.PARTIAL
        for raw in {event.src_path, getattr(event, "dest_path", "") or ""} - {""}:
            path = Path(raw if isinstance(raw, str) else raw.decode())
            try:
                self.on_path(path, change)
            except Exception:  # one unreadable file must never stop the watcher
                log.exception("change could not be handled", path=str(path))
