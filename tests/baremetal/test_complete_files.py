"""A manifest is acted on only when it is complete, and a new one waits a moment for its env file.

Two races an operator runs into with ``cp vmi.yaml vmi.env /etc/qat-handler/vmis/``, both seen
on the real agent before this: a manifest read half-written (a valid first half, without its
``devices``) started a guest with no QAT device; and a manifest read before its env file arrived
had VFs allocated by the agent, so the env file's VFs came too late (``RestartRequired``).

The rules are timed on a fake clock with the watch's events handed in directly; the real
watcher is then checked with waits long enough that the outcome never depends on the machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from handler.baremetal.directory_source import ENV_WAIT_SECONDS, SETTLE_SECONDS, DirectorySource
from handler.core.desired import Desired
from handler.ops.directory_watch import Change
from tests.support.fake_clock import FakeClock

KEY = "edge/gw"
HEAD = "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: gw, namespace: edge}\n"
WITHOUT_DEVICES = HEAD + "spec:\n  domain:\n    memory: {guest: 64Mi}\n"
WITH_QAT = WITHOUT_DEVICES + "    devices:\n      qats:\n        - {name: qat0, deviceName: qat.intel.com/generic}\n"
ENV = "QAT0=0000:3d:01.3\n"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def source(tmp_path: Path, clock: FakeClock) -> DirectorySource:
    return DirectorySource(tmp_path, clock=clock)


def event(source: DirectorySource, path: Path, change: Change) -> None:
    source._path_changed(path, change)


def devices_of(desired: Desired | None) -> list[str]:
    assert desired is not None and desired.vmi is not None
    return [str(d.bdf) for d in desired.devices]


def test_a_file_still_being_written_is_read_when_its_writer_closes_it(
    tmp_path: Path, source: DirectorySource, clock: FakeClock
) -> None:
    path = tmp_path / "gw.yaml"
    (tmp_path / "gw.env").write_text(ENV)
    path.write_text(WITHOUT_DEVICES)  # the first half is a whole VMI on its own
    event(source, path, Change.PARTIAL)
    clock.now += SETTLE_SECONDS / 2
    assert source.timer.fire_due() == 0 and source.desired(KEY) is None
    path.write_text(WITH_QAT)
    event(source, path, Change.PARTIAL)
    event(source, path, Change.FINAL)
    assert devices_of(source.desired(KEY)) == ["0000:3d:01.3"]


def test_a_file_changed_and_never_closed_is_read_once_left_alone(
    tmp_path: Path, source: DirectorySource, clock: FakeClock
) -> None:
    # a symlink made, a chmod, or a writer that keeps the file open: no close ever comes
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "gw.yaml").write_text(WITHOUT_DEVICES)
    path = tmp_path / "gw.yaml"
    path.symlink_to(target / "gw.yaml")
    event(source, path, Change.PARTIAL)
    clock.now += SETTLE_SECONDS * 0.9
    event(source, path, Change.PARTIAL)  # touched again: the wait starts over
    clock.now += SETTLE_SECONDS * 0.9
    source.timer.fire_due()
    assert source.desired(KEY) is None
    clock.now += SETTLE_SECONDS * 0.2
    source.timer.fire_due()
    desired = source.desired(KEY)
    assert desired is not None and desired.vmi is not None


def test_a_new_manifest_waits_for_its_env_file(tmp_path: Path, source: DirectorySource, clock: FakeClock) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(WITH_QAT)
    event(source, path, Change.FINAL)
    assert source.desired(KEY) is None  # held: the env file may be on its way
    clock.now += ENV_WAIT_SECONDS / 2
    (tmp_path / "gw.env").write_text(ENV)
    event(source, tmp_path / "gw.env", Change.FINAL)
    desired = source.desired(KEY)
    assert devices_of(desired) == ["0000:3d:01.3"] and desired is not None and not desired.allocate
    clock.now += ENV_WAIT_SECONDS
    source.timer.fire_due()  # the wait's end finds nothing left to do
    assert devices_of(source.desired(KEY)) == ["0000:3d:01.3"]


def test_without_an_env_file_the_agent_allocates_once_the_wait_is_over(
    tmp_path: Path, source: DirectorySource, clock: FakeClock
) -> None:
    changed: list[str] = []
    source.on_change = changed.append
    path = tmp_path / "gw.yaml"
    path.write_text(WITH_QAT)
    event(source, path, Change.FINAL)
    clock.now += ENV_WAIT_SECONDS * 0.99
    source.timer.fire_due()
    assert source.desired(KEY) is None and changed == []
    clock.now += ENV_WAIT_SECONDS * 0.02
    assert source.timer.fire_due() == 1
    desired = source.desired(KEY)
    assert desired is not None and desired.allocate and changed == [KEY]


def test_only_new_manifests_that_ask_for_devices_wait(tmp_path: Path, source: DirectorySource) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text(WITHOUT_DEVICES.replace("name: gw", "name: plain"))
    event(source, plain, Change.FINAL)
    assert source.desired("edge/plain") is not None  # no devices: nothing to wait for
    path = tmp_path / "gw.yaml"
    path.write_text(WITH_QAT)
    source.scan()  # at start-up or SIGHUP the files are already there: nothing is held
    desired = source.desired(KEY)
    assert desired is not None and desired.allocate
    path.write_text(WITH_QAT.replace("64Mi", "128Mi"))
    event(source, path, Change.FINAL)  # known already: a change is never held
    desired = source.desired(KEY)
    assert desired is not None and desired.vmi is not None and desired.vmi.memory_bytes == 128 * 2**20


def test_a_held_manifest_removed_before_its_wait_ends_is_forgotten(
    tmp_path: Path, source: DirectorySource, clock: FakeClock
) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(WITH_QAT)
    event(source, path, Change.FINAL)
    path.unlink()
    event(source, path, Change.FINAL)
    clock.now += ENV_WAIT_SECONDS * 2
    source.timer.fire_due()
    assert source.desired(KEY) is None and list(source.keys()) == []


# -- the real watcher -----------------------------------------------------------------------


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[DirectorySource]:
    # Waits far longer than the test: whatever the machine's load, only a close or an env file
    # can make the source read, so every outcome below is decided by the events alone.
    source = DirectorySource(tmp_path, settle_seconds=600, env_wait_seconds=600)
    source.start()
    yield source
    source.stop()


def until(what: str, probe: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_the_watch_reads_a_slow_writer_only_after_it_closes(tmp_path: Path, watched: DirectorySource) -> None:
    (tmp_path / "gw.env").write_text(ENV)
    until("the env file seen", lambda: (tmp_path / "gw.env") not in watched._touched)
    with (tmp_path / "gw.yaml").open("w") as writer:
        writer.write(WITHOUT_DEVICES)
        writer.flush()
        until("the partial write seen", lambda: (tmp_path / "gw.yaml") in watched._touched)
        assert watched.desired(KEY) is None
        writer.write(WITH_QAT[len(WITHOUT_DEVICES) :])
    until("the closed manifest read", lambda: watched.desired(KEY) is not None)
    assert devices_of(watched.desired(KEY)) == ["0000:3d:01.3"]


def test_the_watch_holds_a_manifest_copied_before_its_env_file(tmp_path: Path, watched: DirectorySource) -> None:
    (tmp_path / "gw.yaml").write_text(WITH_QAT)
    until("the manifest held", lambda: (tmp_path / "gw.yaml") in watched._env_wait)
    assert watched.desired(KEY) is None
    (tmp_path / "gw.env").write_text(ENV)
    until("the manifest read with its env file", lambda: watched.desired(KEY) is not None)
    assert devices_of(watched.desired(KEY)) == ["0000:3d:01.3"]
