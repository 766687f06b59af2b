"""R4 with R5/R6: generated handoff slots and forged handoffs.

A launcher pod controls the content of its slot: besides a handoff (valid, broken or made
up), it can leave a symlink (to another pod's handoff, or to a host file), a FIFO, a
directory or a huge file there. Whatever it leaves, the agent's read finishes promptly and
yields either the handoff as written or one refusal line naming the slot; it never follows
a symlink. And a parsed handoff provides devices for a VMI only when every fact the API
knows agrees (the model below restates the rule independently).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handler.core.handoff import HANDOFF_FILE, Handoff, handoff_from_json, handoff_to_json
from handler.core.refusal import Refused
from handler.core.vmi import VMI
from handler.kube.handoff_slots import MAX_HANDOFF_BYTES, HandoffSlots
from handler.kube.launcher_pods import CREATED_BY_LABEL, handoff_refusal
from tests.reliability.profiles import SMALL_SETTINGS
from tests.reliability.strategies import bdf, dns_label, dns_name, handoff_documents

pytestmark = pytest.mark.fuzz

READ_BOUND = 10.0
"""Seconds a slot read may take before it counts as a hang (it takes milliseconds)."""
KINDS = ("json", "garbage", "symlink-to-slot", "symlink-to-host", "symlink-dangling", "fifo", "directory", "huge")
tally: Counter[str] = Counter()


@pytest.fixture(scope="module")
def run_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="qat-fuzz-slots-") as path:
        root = Path(path)
        (root / "host-secret").write_text(json.dumps(handoff_to_json(_victim())))
        yield root
    print(f"\nR4/R6 handoff slots ({sum(tally.values())} examples):")
    for outcome, count in sorted(tally.items()):
        print(f"  {count:6d}  {outcome}")


def _victim() -> Handoff:
    return Handoff("victim", "vm", "00000000-0000-4000-8000-000000000001", "victim-pod", (("QAT0", "0000:3d:01.0"),))


def plant(run_dir: Path, slot: Path, kind: str, document: Any, garbage: bytes) -> None:
    target = slot / HANDOFF_FILE
    if kind == "json":
        target.write_text(json.dumps(document), encoding="utf-8")
    elif kind == "garbage":
        target.write_bytes(garbage)
    elif kind == "symlink-to-slot":
        victim = run_dir / "pods" / "victim-pod"
        victim.mkdir(exist_ok=True)
        (victim / HANDOFF_FILE).write_text(json.dumps(handoff_to_json(_victim())))
        target.symlink_to(victim / HANDOFF_FILE)
    elif kind == "symlink-to-host":
        target.symlink_to(run_dir / "host-secret")
    elif kind == "symlink-dangling":
        target.symlink_to(run_dir / "nowhere")
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
    else:
        target.write_bytes(b" " * (MAX_HANDOFF_BYTES + 1) + b"{}")


@SMALL_SETTINGS
@given(
    kind=st.sampled_from(KINDS),
    document=handoff_documents(),
    garbage=st.binary(max_size=200),
    pod_uid=st.uuids().map(str),
)
def test_whatever_a_pod_leaves_in_its_slot_is_read_promptly_or_refused_in_one_line(
    run_dir: Path, kind: str, document: Any, garbage: bytes, pod_uid: str
) -> None:
    slot = run_dir / "pods" / pod_uid
    shutil.rmtree(slot, ignore_errors=True)  # hypothesis may draw a uid again
    slot.mkdir(parents=True)
    plant(run_dir, slot, kind, document, garbage)
    slots = HandoffSlots(run_dir)
    reader = threading.Thread(target=slots.reload, args=(pod_uid,), daemon=True)
    reader.start()
    reader.join(READ_BOUND)
    if reader.is_alive():
        with open(slot / HANDOFF_FILE, "w"):  # release the reader blocked on the FIFO
            pass
        pytest.fail(f"reading a slot holding a {kind} did not finish within {READ_BOUND} s")
    read = slots.slot(pod_uid)
    assert read is not None, f"a slot holding a {kind} was ignored"
    if read.handoff is not None:
        assert kind in ("json", "garbage"), f"a {kind} was followed: {read.handoff}"
        written = document if kind == "json" else json.loads(garbage)
        assert read.handoff == handoff_from_json(written, f"slot {pod_uid}")
        tally[f"{kind}: accepted"] += 1
        return
    assert read.refusal is not None
    line = read.refusal.line()
    assert len(line.splitlines()) == 1 and line.startswith(f"slot {pod_uid}"), line
    if kind == "json":
        with pytest.raises(Refused):
            handoff_from_json(document, "slot")
    tally[f"{kind}: refused"] += 1


UID_A, UID_B = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"


@st.composite
def forgeries(draw: st.DrawFn) -> tuple[VMI, str, Handoff, dict[str, Any] | None]:
    """A VMI, a slot, a handoff in it and the pod the API has for the slot, each fact either
    right or drawn to differ."""

    def fact(right: Any, wrong: Any) -> Any:
        return wrong if draw(st.integers(0, 5)) == 0 else right

    namespace, name = draw(dns_label), draw(dns_name)
    vmi = VMI(namespace, name, UID_A, 1, (), False, 1, 2**30, (), None, (), 30, "")
    slot = draw(st.sampled_from(("pod-1", "pod-2")))
    handoff = Handoff(
        namespace=fact(namespace, "other"),
        name=fact(name, "other"),
        vmi_uid=fact(UID_A, UID_B),
        pod_uid=fact(slot, "pod-3"),
        env=(("QAT0", str(draw(bdf))),),
    )
    pod = None
    if fact(True, False):
        labels = fact({CREATED_BY_LABEL: fact(UID_A, UID_B)}, {})
        pod = {"metadata": {"uid": slot, "namespace": fact(namespace, "other"), "labels": labels}}
    return vmi, slot, handoff, pod


@SMALL_SETTINGS
@given(forgeries())
def test_a_handoff_provides_devices_only_when_every_fact_agrees(case: tuple[VMI, str, Handoff, Any]) -> None:
    vmi, slot, handoff, pod = case
    meta = (pod or {}).get("metadata", {})
    genuine = (
        handoff.pod_uid == slot
        and (handoff.vmi_uid, handoff.namespace, handoff.name) == (vmi.uid, vmi.namespace, vmi.name)
        and pod is not None
        and meta.get("namespace") == vmi.namespace
        and meta.get("labels", {}).get(CREATED_BY_LABEL) == vmi.uid
    )
    refusal = handoff_refusal(vmi, slot, handoff, pod)
    assert (refusal is None) == genuine, f"genuine={genuine} but refusal={refusal}"
    if refusal is not None:
        assert len(refusal.line().splitlines()) == 1 and refusal.subject == f"handoff in slot {slot}"
    tally["forgery " + ("accepted (genuine)" if genuine else "refused")] += 1
