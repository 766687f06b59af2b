"""The handoff slots' sweep, the backstop for handoffs the slot watch never reported (an
inotify queue overflow): a handoff written, changed or removed behind the watch's back is
read at the next sweep, and an unchanged slot is not read again."""

from __future__ import annotations

import json
from pathlib import Path

from handler.core.handoff import HANDOFF_FILE, Handoff, handoff_to_json
from handler.kube.handoff_slots import HandoffSlots

VMI_UID = "00000000-0000-4000-8000-000000000007"


def handoff(bdf: str) -> bytes:
    return json.dumps(handoff_to_json(Handoff("ns", "vm", VMI_UID, "pod-a", (("QAT0", bdf),)))).encode()


def test_a_sweep_reads_the_slots_the_watch_missed_and_no_others(tmp_path: Path) -> None:
    changed: list[str] = []
    slots = HandoffSlots(tmp_path, changed.append)  # the watch is never started: every change is missed
    slots.scan()
    (tmp_path / "pods" / "pod-quiet").mkdir()
    slots.sweep()
    assert changed == []
    slot = tmp_path / "pods" / "pod-a"
    slot.mkdir()
    (slot / HANDOFF_FILE).write_bytes(handoff("0000:3d:01.0"))
    slots.sweep()
    assert changed == [VMI_UID]
    found = slots.slot("pod-a")
    assert found is not None and found.handoff is not None and found.handoff.env == (("QAT0", "0000:3d:01.0"),)
    slots.sweep()
    assert changed == [VMI_UID], "an unchanged slot is read again"
    (slot / "next").write_bytes(handoff("0000:3d:01.1"))
    (slot / "next").rename(slot / HANDOFF_FILE)  # the launcher writes by rename
    slots.sweep()
    found = slots.slot("pod-a")
    assert found is not None and found.handoff is not None and found.handoff.env == (("QAT0", "0000:3d:01.1"),)
    (slot / HANDOFF_FILE).unlink()
    slot.rmdir()
    slots.sweep()
    assert slots.slot("pod-a") is None and changed == [VMI_UID] * 3
