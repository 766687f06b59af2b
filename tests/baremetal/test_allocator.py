"""The bare-metal VF allocator: free, checked VFs for VMIs without an env file, recorded durably."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import libvirt
import pytest
import yaml

from handler.baremetal.allocator import ALLOCATIONS_FILE, VfAllocator
from handler.baremetal.node import BareMetalNode
from handler.baremetal.status_store import read_status_file
from handler.core.bdf import Bdf
from handler.core.device_env import AssignedDevice
from handler.core.domain_identity import DomainIdentity
from handler.core.domain_state import ObservedDomain, Power
from handler.core.refusal import Refused
from handler.core.render_settings import RenderSettings
from handler.core.stop_policy import StopPolicy
from handler.core.vmi import VMI
from handler.core.vmi_parse import parse_vmi
from handler.host.domain_templates import load_templates
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host
from handler.settings import AgentSettings

C62X = SimulatedPf(family="C62x", bdf=Bdf(0, 0x3D, 0, 0), vfs=4, vf_drivers=((1, "c6xxvf"),))


def vmi(name: str, *resources: str, uid: str | None = None) -> VMI:
    devices = [{"name": f"q{i}", "deviceName": r} for i, r in enumerate(resources)]
    return parse_vmi(
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": "alloc", "uid": uid or str(uuid.uuid4())},
            "spec": {"domain": {"memory": {"guest": "64Mi"}, "devices": {"qats": devices}}},
        }
    )


def nothing_taken(_bdf: Bdf) -> bool:
    return False


@pytest.fixture
def c62x_host(tmp_path: Path) -> Path:
    build_simulated_host(tmp_path / "host", SimulatedHost(pfs=(C62X,)))
    return tmp_path / "host"


def test_picks_usable_vfs_only_and_remembers_them(tmp_path: Path, c62x_host: Path) -> None:
    allocator = VfAllocator(tmp_path / "state", c62x_host)
    uid = str(uuid.uuid4())
    first = allocator.allocate(vmi("a", "qat.intel.com/generic", "qat.intel.com/generic", uid=uid), nothing_taken)
    # 3d:01.1 is bound to the host driver c6xxvf, so it is skipped.
    assert [str(d.bdf) for d in first] == ["0000:3d:01.0", "0000:3d:01.2"]
    assert {d.source for d in first} == {"allocator"}
    again = allocator.allocate(vmi("a", "qat.intel.com/generic", "qat.intel.com/generic", uid=uid), nothing_taken)
    assert again == first
    reread = VfAllocator(tmp_path / "state", c62x_host)  # a restarted agent reads the records back
    assert reread.assignments()["alloc/a"] == first
    assert reread.allocate(vmi("a", "qat.intel.com/generic", "qat.intel.com/generic", uid=uid), nothing_taken) == first


def test_skips_vfs_taken_elsewhere_and_refuses_when_none_is_left(tmp_path: Path, c62x_host: Path) -> None:
    allocator = VfAllocator(tmp_path / "state", c62x_host)
    taken = {Bdf(0, 0x3D, 1, 0), Bdf(0, 0x3D, 1, 2)}
    got = allocator.allocate(vmi("a", "qat.intel.com/generic"), lambda bdf: bdf in taken)
    assert [str(d.bdf) for d in got] == ["0000:3d:01.3"]
    with pytest.raises(Refused) as refused:
        allocator.allocate(vmi("b", "qat.intel.com/generic"), lambda bdf: bdf in taken)
    assert refused.value.refusal.reason == "NoFreeVF"
    assert "alloc/b" in refused.value.refusal.line() and "\n" not in refused.value.refusal.line()
    allocator.release("alloc/a")
    assert [str(d.bdf) for d in allocator.allocate(vmi("b", "qat.intel.com/generic"), lambda b: b in taken)] == [
        "0000:3d:01.3"
    ]


def test_two_vmis_racing_for_the_last_free_vf(tmp_path: Path, c62x_host: Path) -> None:
    allocator = VfAllocator(tmp_path / "state", c62x_host)
    taken = {Bdf(0, 0x3D, 1, 0), Bdf(0, 0x3D, 1, 2)}  # leaves only 3d:01.3
    results: dict[str, object] = {}
    start = threading.Barrier(8)

    def race(name: str) -> None:
        start.wait()
        try:
            results[name] = allocator.allocate(vmi(name, "qat.intel.com/generic"), lambda b: b in taken)
        except Refused as refused:
            results[name] = refused.refusal.reason

    threads = [threading.Thread(target=race, args=(f"r{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [name for name, result in results.items() if isinstance(result, tuple)]
    assert len(winners) == 1
    assert sorted(r for r in results.values() if isinstance(r, str)) == ["NoFreeVF"] * 7
    assert list(VfAllocator(tmp_path / "state", c62x_host).assignments()) == [f"alloc/{winners[0]}"]


def test_gen4_resources_follow_cfg_services(tmp_path: Path) -> None:
    host = SimulatedHost(
        pfs=(
            SimulatedPf(family="4xxx", bdf=Bdf(0, 0x6B, 0, 0), vfs=2, services="sym;asym"),
            SimulatedPf(family="4xxx", bdf=Bdf(0, 0x70, 0, 0), vfs=2, services="dc"),
        )
    )
    build_simulated_host(tmp_path / "host", host)
    allocator = VfAllocator(tmp_path / "state", tmp_path / "host")
    crypto = allocator.allocate(vmi("c", "qat.intel.com/cy"), nothing_taken)
    compress = allocator.allocate(vmi("d", "qat.intel.com/dc"), nothing_taken)
    assert crypto[0].bdf.bus == 0x6B and compress[0].bdf.bus == 0x70


def test_adopt_trusts_domains_and_drops_orphans(tmp_path: Path, c62x_host: Path) -> None:
    allocator = VfAllocator(tmp_path / "state", c62x_host)
    allocator.allocate(vmi("gone", "qat.intel.com/generic"), nothing_taken)
    allocator.allocate(vmi("waiting", "qat.intel.com/generic"), nothing_taken)
    device = AssignedDevice("q0", "qat.intel.com/generic", Bdf(0, 0x3D, 1, 3), "allocator")
    identity = DomainIdentity("alloc", "running", str(uuid.uuid4()), 1, "d", 30, (device,))
    domain = ObservedDomain("alloc_running", identity.uid, Power.RUNNING, None, identity)
    allocator.adopt([domain], known_keys={"alloc/waiting", "alloc/running"})
    assert sorted(allocator.assignments()) == ["alloc/running", "alloc/waiting"]
    assert allocator.assignments()["alloc/running"] == (device,)


def test_unreadable_records_refuse_to_guess(tmp_path: Path, c62x_host: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / ALLOCATIONS_FILE).write_text("{not json")
    with pytest.raises(Refused) as refused:
        VfAllocator(tmp_path / "state", c62x_host)
    assert refused.value.refusal.reason == "AllocationsUnreadable"


def test_agent_allocates_and_hands_the_vf_on_when_released(tmp_path: Path, c62x_host: Path) -> None:
    keeper = libvirt.open("test:///default")  # keeps the test driver's state for the node's connection
    vmis = tmp_path / "vmis"
    vmis.mkdir()
    one_vf_host = tmp_path / "one"
    build_simulated_host(one_vf_host, SimulatedHost(pfs=(SimulatedPf("C62x", Bdf(0, 0x3D, 0, 0), vfs=1),)))
    for name in ("first", "second"):
        doc = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": "alloc-e2e"},
            "spec": {
                "domain": {
                    "memory": {"guest": "64Mi"},
                    "devices": {"qats": [{"name": "q", "deviceName": "qat.intel.com/generic"}]},
                }
            },
        }
        (vmis / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    state = tmp_path / "state"
    settings = AgentSettings(
        connect="test:///default",
        vmi_dir=vmis,
        state_dir=state,
        host_root=one_vf_host,
        render=RenderSettings(log_dir=str(state / "logs"), templates=load_templates()),
        on_stop="keep",
    )
    node = BareMetalNode(settings, FreshDeviceChecks(one_vf_host))
    node.start()
    try:
        phases = _wait(
            lambda: (
                _phases(state)
                if len(_phases(state)) == 2
                and "Running" in _phases(state).values()
                and "Scheduled" in _phases(state).values()
                else None
            )
        )
        loser = next(k for k, p in phases.items() if p == "Scheduled")
        winner = next(k for k, p in phases.items() if p == "Running")
        assert "NoFreeVF" in str(read_status_file(state)[loser]["conditions"])
        (vmis / f"{winner.split('/')[1]}.yaml").unlink()
        _wait(lambda: _phases(state).get(loser) == "Running" and winner not in _phases(state))
        assert read_status_file(state)[loser]["devices"][0]["bdf"] == "0000:3d:01.0"
    finally:
        node.shutdown(StopPolicy.KEEP)
        for dom in keeper.listAllDomains():
            if dom.name().startswith("alloc-e2e_"):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        keeper.close()


def _phases(state: Path) -> dict[str, str]:
    return {k: v.get("phase", "") for k, v in read_status_file(state).items()}


def _wait(probe, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"timed out; last status: {probe()!r}")
