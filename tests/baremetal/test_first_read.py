"""The agent reconciles while it still reads the manifests: what it has not read yet is never
taken for removed, and what needs the allocator waits for the read to end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import libvirt
import pytest
import yaml

from handler.agent.agent import StopPolicy
from handler.agent.first_read import FirstRead
from handler.baremetal.node import BareMetalNode
from handler.baremetal.status_store import read_status_file
from handler.core.bdf import Bdf
from handler.core.desired import Desired, Intent
from handler.core.render_settings import RenderSettings
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host
from handler.settings import AgentSettings

NAMESPACE = "firstread"


def test_while_reading_an_unread_or_allocating_vmi_is_put_off_and_comes_back() -> None:
    first = FirstRead()
    named = Desired("ns/named", Intent.RUN, None)
    allocating = Desired("ns/alloc", Intent.RUN, None, allocate=True)
    assert first.look("ns/gone", lambda: None) == (False, None), "no read under way: None means removed"
    first.begin()
    assert first.look("ns/named", lambda: named) == (False, named)
    assert first.look("ns/unread", lambda: None) == (True, None)
    assert first.look("ns/alloc", lambda: allocating) == (True, allocating)
    assert first.done() == ["ns/alloc", "ns/unread"]
    assert first.look("ns/unread", lambda: None) == (False, None)
    assert first.done() == []


def _until(what: str, probe: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 15
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _node(root: Path, host: Path) -> BareMetalNode:
    settings = AgentSettings(
        connect="test:///default",
        vmi_dir=root / "vmis",
        state_dir=root / "state",
        host_root=host,
        render=RenderSettings(log_dir=str(root / "state/logs"), owner="state-dir/firstread"),
        on_stop="keep",
    )
    return BareMetalNode(settings, FreshDeviceChecks(host))


def test_an_adopted_guest_is_left_running_while_its_manifest_is_still_unread(tmp_path: Path) -> None:
    keeper = libvirt.open("test:///default")
    host = tmp_path / "host"
    build_simulated_host(host, SimulatedHost(pfs=(SimulatedPf("C62x", Bdf(0, 0x3F, 0, 0), vfs=2),)))
    (tmp_path / "vmis").mkdir()
    doc = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "kept", "namespace": NAMESPACE},
        "spec": {"domain": {"memory": {"guest": "64Mi"}, "devices": {}}},
    }
    (tmp_path / "vmis/kept.yaml").write_text(yaml.safe_dump(doc))
    phase = lambda: read_status_file(tmp_path / "state").get(f"{NAMESPACE}/kept", {}).get("phase")  # noqa: E731
    first = _node(tmp_path, host)
    first.start()
    try:
        _until("first agent: kept Running", lambda: phase() == "Running" and first.wait_synced(1))
    finally:
        first.shutdown(StopPolicy.KEEP)
    domain = keeper.lookupByName(f"{NAMESPACE}_kept")
    domain_id = domain.ID()

    second = _node(tmp_path, host)
    release, reading = threading.Event(), threading.Event()
    read = second.source.read

    def slow_read(manifests: set[Path]) -> None:
        reading.set()
        release.wait(15)
        read(manifests)

    second.source.read = slow_read  # type: ignore[method-assign]
    passes: list[str] = []
    reconcile = second.reconciler.reconcile
    second.reconciler.reconcile = lambda key: passes.append(key) or reconcile(key)  # type: ignore[method-assign]
    second.start()
    try:
        assert reading.wait(15)
        _until("the adopted guest's pass", lambda: len(passes) >= 1 and second.engine.wait_idle(1))
        domain.suspend()  # lifecycle events for the guest while its manifest is still unread
        domain.resume()
        _until("passes for the events", lambda: len(passes) >= 2 and second.engine.wait_idle(1))
        assert domain.isActive() and domain.ID() == domain_id, "an unread VMI is not a removed one"
        assert not second.wait_synced(0.1), "not synced before every manifest is read"
        release.set()
        _until("second agent synced", lambda: second.wait_synced(1))
        assert domain.isActive() and domain.ID() == domain_id
        assert phase() == "Running"
    finally:
        release.set()
        second.shutdown(StopPolicy.KEEP)
        if domain.isActive():
            domain.destroy()
        domain.undefine()
        keeper.close()
