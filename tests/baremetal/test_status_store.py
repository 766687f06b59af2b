"""The bare-metal status file: its layout (one VMI per line, sorted), what a flush rewrites,
and that every flush replaces the file atomically and durably (file and directory fsynced)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler.baremetal.status_store import StatusStore, read_status_file
from handler.core.actions import RecordEvent
from handler.core.status import Phase, VMIStatus, ready, synchronized
from handler.ops.atomic_file import write_atomically


def running(name: str) -> VMIStatus:
    return VMIStatus(Phase.RUNNING, f"ns_{name}", (ready(True), synchronized(True)), ())


def store_with(tmp_path: Path, names: list[str]) -> StatusStore:
    store = StatusStore(tmp_path, wall=lambda: 1000.0)
    for name in names:
        store.write(f"ns/{name}", running(name))
        store.record_event(f"ns/{name}", RecordEvent("Started", f"started domain ns_{name}"))
    return store


def test_the_file_is_one_json_document_with_one_vmi_per_line_in_key_order(tmp_path: Path) -> None:
    store_with(tmp_path, ["b", "c", "a"]).flush()
    text = (tmp_path / "status.json").read_text()
    lines = text.split("\n")
    assert lines[0] == '{"version": 1, "vmis": {'
    assert lines[-2:] == ["}}", ""]
    keys = [json.loads("{" + line.rstrip(",") + "}").popitem()[0] for line in lines[1:-2]]
    assert keys == ["ns/a", "ns/b", "ns/c"]
    document = json.loads(text)
    assert document["vmis"]["ns/a"]["phase"] == "Running"
    assert [event["reason"] for event in document["vmis"]["ns/a"]["events"]] == ["Started"]
    assert read_status_file(tmp_path) == document["vmis"]


def test_an_empty_store_writes_a_file_that_parses(tmp_path: Path) -> None:
    StatusStore(tmp_path).flush()
    assert json.loads((tmp_path / "status.json").read_text()) == {"version": 1, "vmis": {}}


def test_a_flush_after_one_change_rewrites_only_that_vmis_line(tmp_path: Path) -> None:
    store = store_with(tmp_path, ["a", "b", "c"])
    store.flush()
    before = (tmp_path / "status.json").read_text().split("\n")
    store.record_event("ns/b", RecordEvent("Stopped", "the guest powered off"))
    store.forget("ns/c")
    store.flush()
    after = (tmp_path / "status.json").read_text().split("\n")
    assert after[1] == before[1], "ns/a did not change"
    assert after[2] != before[2].rstrip(",") and '"Stopped"' in after[2]
    assert len(after) == len(before) - 1, "ns/c is gone"
    assert StatusStore(tmp_path).last_status("ns/b") == running("b"), "read back by a new store"


def test_every_flush_replaces_the_file_and_fsyncs_it_and_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_with(tmp_path, ["a"])
    store.flush()
    first = (tmp_path / "status.json").stat().st_ino
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store.write("ns/a", running("a").with_condition(ready(False, "GuestNotRunning")))
    store.flush()
    assert (tmp_path / "status.json").stat().st_ino != first, "a new file renamed over the old one"
    assert len(synced) == 2 and Path(synced[0]).name.startswith(".status.json.") and synced[1] == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"], "no temporary file left"


def test_write_atomically_writes_pieces_in_order(tmp_path: Path) -> None:
    write_atomically(tmp_path / "f", [b"one ", b"", b"two\n"])
    assert (tmp_path / "f").read_bytes() == b"one two\n"
    write_atomically(tmp_path / "f", b"whole", mode=0o600)
    assert (tmp_path / "f").read_bytes() == b"whole"
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o600


def test_a_flush_encodes_only_the_lines_that_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = store_with(tmp_path, [f"vm{i:02d}" for i in range(50)])
    store.flush()
    encoded: list[str] = []
    real_line = StatusStore._line.__func__

    def line(cls: type[StatusStore], key: str, record: object) -> bytes:
        encoded.append(key)
        return real_line(cls, key, record)

    monkeypatch.setattr(StatusStore, "_line", classmethod(line))
    store.record_event("ns/vm07", RecordEvent("Stopped", "the guest powered off"))
    store.write("ns/new", running("new"))
    store.forget("ns/vm30")
    store.flush()
    assert sorted(encoded) == ["ns/new", "ns/vm07"]
    assert list(read_status_file(tmp_path)) == sorted({f"ns/vm{i:02d}" for i in range(50)} - {"ns/vm30"} | {"ns/new"})


_OPS = st.lists(
    st.tuples(st.sampled_from(["write", "ready", "event", "forget", "flush"]), st.sampled_from("abcdefg")), max_size=40
)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_OPS)
def test_the_file_is_every_record_encoded_afresh_in_key_order(tmp_path: Path, ops: list[tuple[str, str]]) -> None:
    """Patching the changed lines gives, byte for byte, what encoding every record again gives."""
    state_dir = tmp_path / str(len(list(tmp_path.iterdir())))
    clock = iter(range(1_000_000))
    store = StatusStore(state_dir, wall=lambda: float(next(clock)))
    for op, name in ops:
        key = f"ns/{name}"
        if op == "write":
            store.write(key, running(name))
        elif op == "ready":
            store.write(key, running(name).with_condition(ready(False, "GuestNotRunning")))
        elif op == "event":
            store.record_event(key, RecordEvent("Started", f"started {name}"))
        elif op == "forget":
            store.forget(key)
        else:
            store.flush()
    store.flush()
    afresh = [StatusStore._line(key, record) for key, record in sorted(store._records.items())]
    expected = b'{"version": 1, "vmis": {\n' + b",\n".join(afresh) + b"\n}}\n"
    assert (state_dir / "status.json").read_bytes() == expected
    reread = StatusStore(state_dir, wall=lambda: 0.0)
    reread.flush()
    assert (state_dir / "status.json").read_bytes() == expected, "a store loaded from the file writes it again"
