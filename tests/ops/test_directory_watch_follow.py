"""The directory watch follows its directory's name, on real inotify: swapped in by two
renames, removed and made again, or re-pointed as a symlink, the new directory is watched
and the caller told; the old one, renamed away, is no longer listened to."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from handler.ops.directory_watch import Change, DirectoryWatch


class Seen:
    def __init__(self) -> None:
        self.paths: list[Path] = []
        self.replaced: list[bool] = []

    def path(self, path: Path, change: Change) -> None:
        if change is Change.FINAL:
            self.paths.append(path)


def until(probe: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Path, Seen]]:
    directory = tmp_path / "vmis"
    directory.mkdir()
    seen = Seen()
    watch = DirectoryWatch(directory, seen.path, on_replaced=seen.replaced.append)
    watch.start()
    try:
        yield directory, seen
    finally:
        watch.stop()
    until(lambda: "watch-follow" not in [t.name for t in threading.enumerate()], "the follower thread to end")


def test_a_directory_swapped_in_by_two_renames_is_watched_instead(watched: tuple[Path, Seen], tmp_path: Path) -> None:
    directory, seen = watched
    fresh = tmp_path / "vmis.new"
    fresh.mkdir()
    directory.rename(tmp_path / "vmis.old")
    fresh.rename(directory)
    until(lambda: seen.replaced[-1:] == [True], "the swap")
    print("told:", seen.replaced)
    (directory / "a.yaml").write_text("x")
    until(lambda: directory / "a.yaml" in seen.paths, "a write in the new directory")
    (tmp_path / "vmis.old" / "b.yaml").write_text("x")
    (directory / "c.yaml").write_text("x")  # seen after b's write, had b's been seen at all
    until(lambda: directory / "c.yaml" in seen.paths, "a second write in the new directory")
    assert not [p for p in seen.paths if p.name == "b.yaml"], "the old directory is still listened to"


def test_a_directory_removed_and_made_again_is_watched_again(watched: tuple[Path, Seen]) -> None:
    directory, seen = watched
    os.rmdir(directory)
    until(lambda: seen.replaced == [False], "the removal")
    directory.mkdir()
    until(lambda: seen.replaced == [False, True], "the new directory")
    (directory / "a.yaml").write_text("x")
    until(lambda: directory / "a.yaml" in seen.paths, "a write in the new directory")


def test_a_re_pointed_symlink_moves_the_watch_to_its_new_target(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    name = tmp_path / "vmis"
    name.symlink_to(first)
    seen = Seen()
    watch = DirectoryWatch(name, seen.path, on_replaced=seen.replaced.append)
    watch.start()
    try:
        (tmp_path / "next").symlink_to(second)
        (tmp_path / "next").rename(name)  # the atomic way to re-point a symlink
        until(lambda: seen.replaced == [True], "the re-pointed link")
        (second / "a.yaml").write_text("x")
        until(lambda: name / "a.yaml" in seen.paths, "a write in the new target, by the link's name")
    finally:
        watch.stop()


def test_a_watch_without_a_callback_watches_the_directory_only(tmp_path: Path) -> None:
    seen = Seen()
    watch = DirectoryWatch(tmp_path, seen.path)
    watch.start()
    try:
        assert watch._observer is not None
        assert [emitter.watch.path for emitter in watch._observer.emitters] == [str(tmp_path)]
    finally:
        watch.stop()


def test_a_directory_given_as_a_symlink_is_watched_through_it(tmp_path: Path) -> None:
    target = tmp_path / "srv-vmis"
    target.mkdir()
    (tmp_path / "vmis").symlink_to(target)  # /etc/qat-handler/vmis -> /srv/vmis, say
    seen = Seen()
    watch = DirectoryWatch(tmp_path / "vmis", seen.path)
    watch.start()
    try:
        (target / "a.yaml").write_text("x")
        until(lambda: tmp_path / "vmis" / "a.yaml" in seen.paths, "a write in the link's target")
    finally:
        watch.stop()


def test_a_recursive_watch_does_not_follow_symlinks(tmp_path: Path) -> None:
    """The handoff slots are watched recursively, and pods write into them: a link a pod made
    must not lead the agent's watch elsewhere."""
    watch = DirectoryWatch(tmp_path, Seen().path, recursive=True)
    watch.start()
    try:
        assert watch._observer is not None
        assert [emitter.watch.follow_symlink for emitter in watch._observer.emitters] == [False]
    finally:
        watch.stop()


def test_every_one_of_many_swaps_is_told_and_followed(watched: tuple[Path, Seen], tmp_path: Path) -> None:
    """The follower may look between the two renames of a swap, and must then still follow the
    second (it once took the directory from the first look but watched what the second left)."""
    directory, seen = watched
    for round_ in range(60):
        (tmp_path / "next").mkdir()
        told = len(seen.replaced)
        os.rename(directory, tmp_path / "previous")
        os.rename(tmp_path / "next", directory)
        shutil.rmtree(tmp_path / "previous")
        until(lambda told=told: True in seen.replaced[told:], f"swap {round_} to be told")
        until(lambda: seen.replaced[-1] is True, f"swap {round_} to end on the new directory")
        written = directory / f"{round_}.yaml"
        written.write_text("x")
        until(lambda written=written: written in seen.paths, f"a write after swap {round_}")


def test_a_file_renamed_in_from_another_directory_is_complete_at_once(tmp_path: Path) -> None:
    """`mv /tmp/vmi.yaml vmis/` (or an atomic write staged elsewhere): the file arrives whole."""
    watched, staging = tmp_path / "vmis", tmp_path / "staging"
    watched.mkdir()
    staging.mkdir()
    changes: list[tuple[Path, Change]] = []
    watch = DirectoryWatch(watched, lambda path, change: changes.append((path, change)))
    watch.start()
    try:
        (staging / "a.yaml").write_text("x")
        (staging / "a.yaml").rename(watched / "a.yaml")
        until(lambda: (watched / "a.yaml", Change.FINAL) in changes, "the file renamed in")
        assert (watched / "a.yaml", Change.PARTIAL) not in changes
        (watched / "a.yaml").rename(staging / "b.yaml")
        until(lambda: changes.count((watched / "a.yaml", Change.FINAL)) == 2, "the file renamed out")
    finally:
        watch.stop()
