"""The node side of the launcher handoff: ``<run-dir>/pods/<pod-uid>/handoff.json``.

Each launcher pod mounts only its own slot (``subPathExpr: $(POD_UID)``), so the
directory name is the one fact a pod cannot forge: the agent trusts the slot name as
the pod UID and checks everything else in the file against the API.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from handler.core.handoff import (
    HANDOFF_FILE,
    REPORT_FILE,
    AgentReport,
    Handoff,
    handoff_from_json,
    report_from_json,
    report_to_json,
)
from handler.core.refusal import Refusal, Refused
from handler.ops.atomic_file import write_atomically
from handler.ops.directory_watch import Change, DirectoryWatch
from handler.ops.file_version import FileVersion, file_version

log = structlog.get_logger("qat_handler.handoff")

SLOTS_MODE = 0o1733
MAX_HANDOFF_BYTES = 64 * 1024
"""A handoff is a few hundred bytes; anything far larger is not one."""


@dataclass(frozen=True, slots=True)
class Slot:
    pod_uid: str
    """The slot directory's name: the pod UID, as kubelet's subPathExpr made it."""
    handoff: Handoff | None
    refusal: Refusal | None = None


class HandoffSlots:
    def __init__(self, run_dir: Path, on_change: Callable[[str], None] = lambda _uid: None) -> None:
        self.pods_dir = run_dir / "pods"
        self.on_change = on_change
        self._lock = threading.Lock()
        self._slots: dict[str, Slot] = {}
        self._read_as: dict[str, FileVersion | None] = {}
        """Each slot's handoff file as it was when last read, for sweep()."""
        self._watch = DirectoryWatch(self.pods_dir, self._path_changed, recursive=True)

    def for_vmi(self, vmi_uid: str) -> list[Slot]:
        with self._lock:
            return [s for s in self._slots.values() if s.handoff is not None and s.handoff.vmi_uid == vmi_uid]

    def stopping(self) -> list[tuple[str, Handoff]]:
        """(slot, handoff) of each launcher that asked for its guest to be stopped. The slot is the
        directory's name, the pod uid a pod cannot forge; a handoff naming another pod is left out."""
        with self._lock:
            slots = list(self._slots.values())
        return [
            (s.pod_uid, s.handoff)
            for s in slots
            if s.handoff is not None and s.handoff.stop_requested and s.handoff.pod_uid == s.pod_uid
        ]

    def slot(self, pod_uid: str) -> Slot | None:
        with self._lock:
            return self._slots.get(pod_uid)

    def scan(self) -> None:
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        # kubelet makes each pod's slot (subPathExpr) as root with this directory's mode, and
        # launchers run as non-root: they must be able to create files in their slot, but
        # not list anyone's (1733: write and search for all, sticky, list for root only).
        self.pods_dir.chmod(SLOTS_MODE)
        present = {entry.name for entry in self.pods_dir.iterdir() if entry.is_dir()}
        for pod_uid in sorted(present | set(self._slots)):
            self.reload(pod_uid)

    def sweep(self) -> None:
        """Read again the slots whose handoff changed, came or went without the watch saying so
        (an inotify queue overflow); the others are left alone."""
        try:
            present = {entry.name for entry in self.pods_dir.iterdir() if entry.is_dir()}
        except OSError as error:
            log.error("handoff slots cannot be listed", directory=str(self.pods_dir), error=str(error))
            return
        with self._lock:
            known = dict(self._read_as)
        missed = [uid for uid in sorted(present | known.keys()) if known.get(uid) != self._signature(uid)]
        if missed:
            log.warning("handoff changes the slot watch missed; reading them", slots=len(missed))
        for pod_uid in missed:
            self.reload(pod_uid)

    def reload(self, pod_uid: str) -> None:
        signature = self._signature(pod_uid)  # taken first: a write after it shows at the next sweep
        slot = self._read(pod_uid)
        with self._lock:
            if signature is None and slot is None:
                self._read_as.pop(pod_uid, None)
            else:
                self._read_as[pod_uid] = signature
            old = self._slots.pop(pod_uid, None)
            if slot is not None:
                self._slots[pod_uid] = slot
        touched = {s.handoff.vmi_uid for s in (old, slot) if s is not None and s.handoff is not None}
        for vmi_uid in touched:
            self.on_change(vmi_uid)

    def told_off(self, pod_uid: str, vmi_uid: str) -> bool:
        """Whether the slot's report already says that this VMI's guest is off."""
        try:
            report = report_from_json(json.loads(read_slot_file(self.pods_dir / pod_uid / REPORT_FILE)))
        except (OSError, ValueError):
            return False
        return report is not None and report.vmi_uid == vmi_uid and report.guest_off

    def write_report(self, pod_uid: str, report: AgentReport) -> None:
        folder = self.pods_dir / pod_uid
        if folder.is_dir():
            write_atomically(folder / REPORT_FILE, json.dumps(report_to_json(report)).encode(), mode=0o644)

    def _read(self, pod_uid: str) -> Slot | None:
        path = self.pods_dir / pod_uid / HANDOFF_FILE
        try:
            data = json.loads(read_slot_file(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            refusal = Refusal(
                "HandoffInvalid",
                f"slot {pod_uid}",
                f"holds an unreadable handoff ({error})",
                "restart the VMI's pod so its launcher writes the handoff again",
            )
            log.warning(refusal.line(), pod_uid=pod_uid, reason=refusal.reason)
            return Slot(pod_uid, None, refusal)
        try:
            return Slot(pod_uid, handoff_from_json(data, f"slot {pod_uid}"))
        except Refused as refused:
            log.warning(refused.refusal.line(), pod_uid=pod_uid, reason=refused.refusal.reason)
            return Slot(pod_uid, None, refused.refusal)

    def _signature(self, pod_uid: str) -> FileVersion | None:
        """The slot's handoff file as it is now; a link is not followed (a pod could make one)."""
        return file_version(self.pods_dir / pod_uid / HANDOFF_FILE, follow_symlinks=False)

    # -- watching -------------------------------------------------------------------------
    def start(self) -> None:
        self._watch.start()

    def stop(self) -> None:
        self._watch.stop()

    def _path_changed(self, path: Path, _change: Change) -> None:
        # Every change is read at once: the launcher writes its handoff by an atomic rename, and
        # a pod's partial write is refused like any other bad handoff until the next change.
        try:
            relative = path.relative_to(self.pods_dir)
        except ValueError:
            return
        if relative.parts and (len(relative.parts) == 1 or relative.parts[1] == HANDOFF_FILE):
            self.reload(relative.parts[0])


def read_slot_file(path: Path) -> str:
    """The text of a file a pod wrote, read without trusting it: a symlink (to another slot's
    handoff, or to a host file), a FIFO (which would block the agent) or a huge file is refused
    with OSError instead of being followed, waited on or read whole."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "a symlink, which is never followed") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if info.st_size > MAX_HANDOFF_BYTES:
            raise OSError(errno.EFBIG, f"larger than {MAX_HANDOFF_BYTES} bytes")
        data = os.read(fd, MAX_HANDOFF_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_HANDOFF_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_HANDOFF_BYTES} bytes")
    return data.decode("utf-8")
