"""The directory source: which manifests it reads, and what a vanished file does."""

from __future__ import annotations

from pathlib import Path

import structlog

from handler.baremetal.directory_source import REMOVAL_SETTLE_SECONDS, DirectorySource
from tests.support.fake_clock import FakeClock


def manifest(name: str, memory: str = "64Mi") -> str:
    return (
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\n"
        f"metadata:\n  name: {name}\nspec:\n  domain:\n    memory:\n      guest: {memory}\n"
    )


def test_scan_reads_manifests_only_and_forgets_removed_ones(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(manifest("a"))
    (tmp_path / "b.json").write_text(
        '{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",'
        ' "metadata": {"name": "b"}, "spec": {"domain": {"memory": {"guest": "1Gi"}}}}'
    )
    for ignored in (".hidden.yaml", "c.yaml~", "notes.txt", "a.env"):
        (tmp_path / ignored).write_text(manifest("ignored"))
    changed: list[str] = []
    clock = FakeClock()
    source = DirectorySource(tmp_path, changed.append, clock=clock)
    source.scan()
    assert sorted(source.keys()) == ["default/a", "default/b"] == sorted(changed)
    (tmp_path / "a.yaml").unlink()
    source.scan()
    assert sorted(source.keys()) == ["default/a", "default/b"], "removed before it could come back"
    clock.now += REMOVAL_SETTLE_SECONDS
    assert source.timer.fire_due() == 1
    assert list(source.keys()) == ["default/b"]
    assert changed[-1] == "default/a"


def test_a_manifest_saved_the_way_vim_saves_is_a_change_never_a_removal(tmp_path: Path) -> None:
    """vim renames the file away (its backup), writes the new one, then deletes the backup."""
    (tmp_path / "a.yaml").write_text(manifest("a", "64Mi"))
    changed: list[str] = []
    clock = FakeClock()
    source = DirectorySource(tmp_path, changed.append, clock=clock)
    source.scan()
    (tmp_path / "a.yaml").rename(tmp_path / "a.yaml~")
    source.reload(tmp_path / "a.yaml", arriving=True)  # the watch's rename event, read in the gap
    clock.now += REMOVAL_SETTLE_SECONDS / 2
    (tmp_path / "a.yaml").write_text(manifest("a", "128Mi"))
    (tmp_path / "a.yaml~").unlink()
    source.reload(tmp_path / "a.yaml", arriving=True)  # its close
    clock.now += REMOVAL_SETTLE_SECONDS
    source.timer.fire_due()
    desired = source.desired("default/a")
    assert desired is not None and desired.vmi is not None and desired.vmi.memory_bytes == 128 * 2**20
    assert changed == ["default/a", "default/a"], "one read at start, one for the change"


def test_a_duplicate_waits_for_the_owner_and_takes_over_when_it_goes(tmp_path: Path) -> None:
    (tmp_path / "1-first.yaml").write_text(manifest("same", "64Mi"))
    (tmp_path / "2-second.yaml").write_text(manifest("same", "128Mi"))
    clock = FakeClock()
    source = DirectorySource(tmp_path, clock=clock)
    source.scan()
    desired = source.desired("default/same")
    assert desired is not None and desired.vmi is not None and desired.vmi.memory_bytes == 64 * 2**20
    (tmp_path / "1-first.yaml").unlink()
    source.reload(tmp_path / "1-first.yaml")
    clock.now += REMOVAL_SETTLE_SECONDS
    source.timer.fire_due()
    desired = source.desired("default/same")
    assert desired is not None and desired.vmi is not None and desired.vmi.memory_bytes == 128 * 2**20


def test_a_dangling_or_looping_link_is_no_manifest_and_a_directory_is_a_broken_one(tmp_path: Path) -> None:
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "nowhere.yaml")
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    (tmp_path / "dir.yaml").mkdir()
    source = DirectorySource(tmp_path)
    source.scan()
    assert list(source.keys()) == ["default/dir"]
    desired = source.desired("default/dir")
    assert desired is not None and desired.blocked is not None
    assert "dir.yaml cannot be read (IsADirectoryError" in desired.blocked.line()


def test_while_the_directory_is_gone_its_vmis_stay_and_a_new_one_is_read_whole(tmp_path: Path) -> None:
    """A directory swapped in by two renames is missing between them: reading it then as empty
    would shut every guest down and start them again a moment later."""
    directory = tmp_path / "vmis"
    directory.mkdir()
    for name in ("kept", "removed"):
        (directory / f"{name}.yaml").write_text(manifest(name))
    changed: list[str] = []
    clock = FakeClock()
    source = DirectorySource(directory, changed.append, clock=clock)
    source.scan()
    directory.rename(tmp_path / "vmis.old")
    source.rescan()  # a SIGHUP, between the two renames
    source.scan()
    assert sorted(source.keys()) == ["default/kept", "default/removed"]
    assert sorted(changed) == ["default/kept", "default/removed"], "nothing changed while it was gone"
    directory.mkdir()
    (directory / "kept.yaml").write_text(manifest("kept"))
    (directory / "added.yaml").write_text(manifest("added"))
    source.scan()
    clock.now += REMOVAL_SETTLE_SECONDS
    source.timer.fire_due()
    assert sorted(source.keys()) == ["default/added", "default/kept"]


def test_an_env_file_saved_the_way_vim_saves_never_hands_the_vmi_to_the_allocator(tmp_path: Path) -> None:
    """The VMI is refused (its env file names a VF that is no QAT VF) and the operator fixes
    the env file in vim: in the gap the manifest has no env file, and the allocator must not
    pick VFs for a guest that is about to get the ones the env file names."""
    (tmp_path / "a.yaml").write_text(
        manifest("a") + "    devices:\n      qats: [{name: q, deviceName: qat.intel.com/generic}]\n"
    )
    (tmp_path / "a.env").write_text("QAT0=not-a-bdf\n")
    changed: list[str] = []
    clock = FakeClock()
    source = DirectorySource(tmp_path, changed.append, clock=clock)
    source.scan()
    desired = source.desired("default/a")
    assert desired is not None and desired.blocked is not None and not desired.allocate
    (tmp_path / "a.env").rename(tmp_path / "a.env~")
    source.reload(tmp_path / "a.yaml", arriving=True)  # the env file's rename, read in the gap
    desired = source.desired("default/a")
    assert desired is not None and not desired.allocate, "handed to the allocator in the gap"
    (tmp_path / "a.env").write_text("QAT0=0000:3d:01.1\n")
    source.reload(tmp_path / "a.yaml", arriving=True)
    clock.now += REMOVAL_SETTLE_SECONDS
    source.timer.fire_due()
    desired = source.desired("default/a")
    assert desired is not None and desired.blocked is None and [str(d.bdf) for d in desired.devices] == ["0000:3d:01.1"]
    assert changed == ["default/a", "default/a"]


def test_an_env_file_removed_for_good_hands_the_vmi_to_the_allocator_after_the_wait(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        manifest("a") + "    devices:\n      qats: [{name: q, deviceName: qat.intel.com/generic}]\n"
    )
    (tmp_path / "a.env").write_text("QAT0=0000:3d:01.1\n")
    clock = FakeClock()
    source = DirectorySource(tmp_path, clock=clock)
    source.scan()
    (tmp_path / "a.env").unlink()
    source.reload(tmp_path / "a.yaml", arriving=True)
    clock.now += REMOVAL_SETTLE_SECONDS
    assert source.timer.fire_due() == 1
    desired = source.desired("default/a")
    assert desired is not None and desired.allocate


def test_a_sweep_reads_what_the_watch_missed_and_nothing_else(tmp_path: Path) -> None:
    """The watch is not started here: every change below is one it missed (an inotify queue
    overflow, a file system without inotify)."""
    for name in ("same", "edited", "gone", "env"):
        (tmp_path / f"{name}.yaml").write_text(manifest(name))
    changed: list[str] = []
    clock = FakeClock()
    source = DirectorySource(tmp_path, changed.append, clock=clock)
    source.scan()
    changed.clear()
    source.sweep()
    assert changed == [], "nothing changed, nothing read"
    (tmp_path / "edited.yaml").write_text(manifest("edited", "128Mi"))
    (tmp_path / "new.yaml").write_text(manifest("new"))
    (tmp_path / "gone.yaml").unlink()
    (tmp_path / "env.env").write_text("QAT0=0000:3d:01.1\n")
    source.sweep()
    assert sorted(changed) == ["default/edited", "default/env", "default/new"]
    desired = source.desired("default/edited")
    assert desired is not None and desired.vmi is not None and desired.vmi.memory_bytes == 128 * 2**20
    clock.now += REMOVAL_SETTLE_SECONDS  # a removal counts once the file has stayed away
    source.timer.fire_due()
    assert sorted(source.keys()) == ["default/edited", "default/env", "default/new", "default/same"]
    changed.clear()
    source.sweep()
    assert changed == []


def test_a_renamed_manifest_takes_its_key_over_at_once_and_is_no_duplicate(tmp_path: Path) -> None:
    """mv a.yaml b.yaml: the old name is gone (and waits only to be sure) when the new one is
    read, so the new file owns the VMI at once, with no duplicate reported."""
    (tmp_path / "a.yaml").write_text(manifest("same"))
    changed: list[str] = []
    clock = FakeClock()
    source = DirectorySource(tmp_path, changed.append, clock=clock)
    source.scan()
    (tmp_path / "a.yaml").rename(tmp_path / "b.yaml")
    with structlog.testing.capture_logs() as logs:
        source.reload(tmp_path / "a.yaml", arriving=True)  # the move's two paths, in either order
        source.reload(tmp_path / "b.yaml", arriving=True)
        clock.now += REMOVAL_SETTLE_SECONDS
        source.timer.fire_due()
    desired = source.desired("default/same")
    assert desired is not None and list(source.keys()) == ["default/same"]
    assert not [entry for entry in logs if entry["event"] == "duplicate VMI manifest ignored"]
    (tmp_path / "b.yaml").unlink()
    source.reload(tmp_path / "b.yaml", arriving=True)
    clock.now += REMOVAL_SETTLE_SECONDS
    source.timer.fire_due()
    assert list(source.keys()) == [], "the new file is the one that counts"
