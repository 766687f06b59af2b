"""A state directory that cannot be written (a full disk): no VF is handed out without its
record, a release frees the VF and writes the record once it can, and the status file
catches up by itself once space is back. Errors are one line, never a crash."""

from __future__ import annotations

import errno
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from handler.agent.device_gate import DeviceGate
from handler.baremetal.allocator import ALLOCATIONS_FILE, VfAllocator
from handler.baremetal.status_store import StatusStore
from handler.core.backoff import Backoff
from handler.core.bdf import Bdf
from handler.core.desired import Desired, Intent
from handler.core.status import Phase, VMIStatus, ready, synchronized
from handler.core.vmi import VMI
from handler.core.vmi_parse import parse_vmi
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host
from handler.ops import atomic_file
from handler.ops.atomic_file import StateNotWritable

C62X = SimulatedPf(family="C62x", bdf=Bdf(0, 0x3D, 0, 0), vfs=2)
GENERIC = "qat.intel.com/generic"


class Disk:
    """Stands between the agent and ``write_atomically``: full or not, counting writes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        self.writes: list[Path] = []
        self.refused = threading.Event()
        real = atomic_file.write_atomically

        def write(path: Path, data: object, mode: int = 0o644) -> None:
            if self.full:
                self.refused.set()
                raise OSError(errno.ENOSPC, "No space left on device")
            real(path, data, mode)  # type: ignore[arg-type]
            self.writes.append(path)

        monkeypatch.setattr(atomic_file, "write_atomically", write)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    return Disk(monkeypatch)


@pytest.fixture
def allocator(tmp_path: Path) -> VfAllocator:
    build_simulated_host(tmp_path / "host", SimulatedHost(pfs=(C62X,)))
    return VfAllocator(tmp_path / "state", tmp_path / "host")


def vmi(name: str) -> VMI:
    return parse_vmi(
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": "full", "uid": str(uuid.uuid4())},
            "spec": {
                "domain": {"memory": {"guest": "64Mi"}, "devices": {"qats": [{"name": "q", "deviceName": GENERIC}]}}
            },
        }
    )


class NoForeignDomains:
    def foreign_devices(self, owner: str) -> dict[Bdf, str]:
        return {}


def needs_a_vf(name: str) -> Desired:
    return Desired(f"full/{name}", Intent.RUN, vmi(name), allocate=True)


def on_disk(allocator: VfAllocator) -> dict[str, list[str]]:
    document = json.loads(allocator.path.read_text())
    return {key: [d["bdf"] for d in entry["devices"]] for key, entry in document["allocations"].items()}


def test_an_allocation_that_cannot_be_recorded_is_not_made(allocator: VfAllocator, disk: Disk) -> None:
    disk.full = True
    with pytest.raises(StateNotWritable) as refused:
        allocator.allocate(vmi("a"), lambda bdf: False)
    line = str(refused.value)
    assert ALLOCATIONS_FILE in line and "No space left on device" in line and "free space" in line
    assert "\n" not in line and refused.value.reason == "StateNotWritable"
    assert allocator.assignments() == {}, "a VF was handed out without its record"
    disk.full = False
    got = allocator.allocate(vmi("a"), lambda bdf: False)
    assert on_disk(allocator) == {"full/a": [str(got[0].bdf)]}


def test_a_release_frees_the_vf_and_its_retry_writes_the_record(allocator: VfAllocator, disk: Disk) -> None:
    first = allocator.allocate(vmi("a"), lambda bdf: False)
    disk.full = True
    with pytest.raises(StateNotWritable):
        allocator.release("full/a")
    assert allocator.assignments() == {}, "the VF stays held in memory"
    assert on_disk(allocator) == {"full/a": [str(first[0].bdf)]}  # the file lags
    disk.full = False
    allocator.release("full/a")  # the reconcile's retry: nothing left to free, but the file is behind
    assert on_disk(allocator) == {}
    writes = len(disk.writes)
    allocator.release("full/a")
    assert len(disk.writes) == writes, "a release with nothing to do and nothing behind writes nothing"


def test_a_failed_release_still_wakes_the_vmis_waiting_for_a_vf(allocator: VfAllocator, disk: Disk) -> None:
    requeued: list[str] = []
    gate = DeviceGate(NoForeignDomains(), "", requeued.append, allocator=allocator)  # type: ignore[arg-type]
    for name in ("a", "b"):  # the host's two VFs
        assert gate.judge(needs_a_vf(name), None).blocked is None
    assert gate.judge(needs_a_vf("c"), None).blocked.reason == "NoFreeVF"  # type: ignore[union-attr]
    disk.full = True
    with pytest.raises(StateNotWritable):
        gate.release("full/a")
    assert requeued == ["full/c"]
    assert not gate.claims.held_by("full/a")
    disk.full = False
    assert gate.judge(needs_a_vf("c"), None).blocked is None


def test_the_status_file_catches_up_by_itself_once_it_can_be_written(tmp_path: Path, disk: Disk) -> None:
    store = StatusStore(tmp_path, flush_delay=0.0, retry=Backoff(0.02, 0.05))
    store.start()
    try:
        with structlog.testing.capture_logs() as logs:
            disk.full = True
            store.write("ns/a", VMIStatus(Phase.RUNNING, "ns_a", (ready(True), synchronized(True)), ()))
            assert disk.refused.wait(5)
            # Nothing else changes from here on: the retry alone must bring the file up to date.
            disk.full = False
            for _ in range(200):
                if (tmp_path / "status.json").exists():
                    break
                threading.Event().wait(0.01)
        assert json.loads((tmp_path / "status.json").read_text())["vmis"]["ns/a"]["phase"] == "Running"
    finally:
        store.close()
    failed = [entry for entry in logs if entry["event"] == "status file could not be written"]
    assert failed and "No space left on device" in failed[0]["error"] and failed[0]["retry_seconds"] == 0.02
    assert any(entry["event"] == "status file written again" for entry in logs)


def test_a_status_file_that_cannot_be_written_at_stop_is_one_error_line(tmp_path: Path, disk: Disk) -> None:
    store = StatusStore(tmp_path)
    store.write("ns/a", VMIStatus(Phase.RUNNING, "ns_a", (ready(True), synchronized(True)), ()))
    disk.full = True
    with structlog.testing.capture_logs() as logs:
        store.close()
    assert [entry["event"] for entry in logs] == ["status file could not be written at stop"]


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before and t.name == "status-flush" and t.is_alive()]
    assert not left, "a status flusher outlived its store"
