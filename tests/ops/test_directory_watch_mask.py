"""The directory watch asks inotify for changes only: reading a watched file wakes nobody,
and writing, renaming or removing one is still seen."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from watchdog.observers.inotify_c import InotifyConstants

from handler.ops.directory_watch import Change, DirectoryWatch


def _until(probe, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 10
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_reads_are_not_asked_for_and_changes_are_seen(tmp_path: Path) -> None:
    changes: list[tuple[Path, Change]] = []
    watch = DirectoryWatch(tmp_path, lambda path, change: changes.append((path, change)))
    watch.start()
    try:
        assert watch._observer is not None
        (emitter,) = watch._observer.emitters
        mask = emitter.get_event_mask_from_filter()  # type: ignore[attr-defined]
        assert not mask & (InotifyConstants.IN_OPEN | InotifyConstants.IN_CLOSE_NOWRITE | InotifyConstants.IN_ACCESS)
        assert mask & InotifyConstants.IN_CLOSE_WRITE and mask & InotifyConstants.IN_MOVE
        (tmp_path / "a.yaml").write_text("x")
        _until(lambda: (tmp_path / "a.yaml", Change.FINAL) in changes, "the write, closed")
        assert changes[0] == (tmp_path / "a.yaml", Change.PARTIAL)  # created: its writer was still at it
        (tmp_path / "a.yaml").rename(tmp_path / "b.yaml")
        _until(lambda: (tmp_path / "b.yaml", Change.FINAL) in changes, "the rename")
        before = len(changes)  # taken before the removal, whose event may come at once
        (tmp_path / "b.yaml").unlink()
        _until(lambda: (tmp_path / "b.yaml", Change.FINAL) in changes[before:], "the removal")
    finally:
        watch.stop()
