"""Watching a directory with watchdog, reduced to "this path changed, and how".

Both the manifest directory and the launcher handoff slots need the same thing: every
path an event touches (a rename touches two), and a watcher that survives whatever the
callback raises, since one bad file must never stop the watching of the others. Each
change says whether the path's content is final (closed after writing, renamed, removed)
or may still be changing (created or modified, with its writer possibly still at it).
"""

from __future__ import annotations

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
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

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


class DirectoryWatch:
    def __init__(self, directory: Path, on_path: Callable[[Path, Change], None], recursive: bool = False) -> None:
        self.directory = directory
        self.on_path = on_path
        self.recursive = recursive
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        observer = Observer()
        observer.schedule(_Handler(self.on_path), str(self.directory), recursive=self.recursive, event_filter=_CHANGES)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None


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
