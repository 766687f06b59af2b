"""Echoes of the agent's own define and start are dropped; nothing else is, and not for long."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import libvirt
import pytest
import yaml

from handler.agent.agent import Engine, EngineSettings
from handler.agent.echo_filter import EchoFilter
from handler.agent.keyed_queue import KeyedQueue
from handler.agent.reconciler import Reconciler
from handler.baremetal.node import BareMetalNode
from handler.baremetal.status_store import read_status_file
from handler.core.bdf import Bdf
from handler.core.render_settings import RenderSettings
from handler.core.stop_policy import StopPolicy
from handler.host.domain_templates import load_templates
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host
from handler.settings import AgentSettings
from tests.support.fake_clock import FakeClock

GENERIC = "qat.intel.com/generic"


def test_each_expectation_drops_one_event_of_its_kind_for_its_domain() -> None:
    echoes = EchoFilter(FakeClock(), ttl=5.0)
    echoes.expect("ns_a", "started")
    assert not echoes.swallow("ns_a", "defined")
    assert not echoes.swallow("ns_b", "started")
    assert echoes.swallow("ns_a", "started")
    assert not echoes.swallow("ns_a", "started"), "a second start is not ours"
    assert echoes.pending() == 0


def test_an_expectation_expires() -> None:
    clock = FakeClock()
    echoes = EchoFilter(clock, ttl=5.0)
    echoes.expect("ns_a", "defined")
    clock.now += 5.5
    assert not echoes.swallow("ns_a", "defined")
    assert echoes.pending() == 0


def test_expired_expectations_are_dropped_even_if_no_event_comes() -> None:
    clock = FakeClock()
    echoes = EchoFilter(clock, ttl=5.0)
    for index in range(300):
        echoes.expect(f"ns_{index}", "started")
    clock.now += 6
    echoes.expect("ns_new", "started")
    assert echoes.pending() == 1


def test_a_failed_call_withdraws_its_expectation() -> None:
    reconciler = Reconciler.__new__(Reconciler)
    reconciler.echoes = EchoFilter(FakeClock())

    def define() -> None:
        raise RuntimeError("libvirt said no")

    with pytest.raises(RuntimeError):
        reconciler._echoing("ns_a", "defined", define)
    assert reconciler.echoes.pending() == 0
    reconciler._echoing("ns_a", "defined", lambda: None)
    assert reconciler.echoes.pending() == 1


def _engine(clock: FakeClock) -> tuple[Engine, KeyedQueue, EchoFilter]:
    echoes = EchoFilter(clock, ttl=5.0)
    invalidated: list[bool] = []
    foreign = SimpleNamespace(invalidate=lambda: invalidated.append(True))
    reconciler = Reconciler.__new__(Reconciler)  # only what events need: the source, the echoes, the VF gate
    reconciler.source = SimpleNamespace(knows=lambda key: True)  # type: ignore[assignment]
    reconciler.echoes = echoes
    reconciler.devices = SimpleNamespace(foreign=foreign)  # type: ignore[assignment]
    queue = KeyedQueue(clock)
    return Engine(reconciler, EngineSettings(), clock=clock, queue=queue), queue, echoes


def test_the_engine_queues_no_pass_for_an_echo_but_does_for_a_real_event() -> None:
    clock = FakeClock()
    engine, queue, echoes = _engine(clock)
    echoes.expect("ns_vm", "defined")
    echoes.expect("ns_vm", "started")
    engine.on_domain_event("ns_vm", "defined")
    engine.on_domain_event("ns_vm", "started")
    assert queue.pending() == 0
    engine.on_domain_event("ns_vm", "stopped")
    assert queue.pending() == 1


def test_an_event_after_the_expiry_is_not_swallowed() -> None:
    clock = FakeClock()
    engine, queue, echoes = _engine(clock)
    echoes.expect("ns_vm", "started")
    clock.now += 10
    engine.on_domain_event("ns_vm", "started")
    assert queue.pending() == 1


# -- end to end, on libvirt's test driver ------------------------------------------------


def _node(tmp_path: Path) -> BareMetalNode:
    host = tmp_path / "host"
    build_simulated_host(host, SimulatedHost(pfs=(SimulatedPf("C62x", Bdf(0, 0x3E, 0, 0), vfs=2),)))
    (tmp_path / "vmis").mkdir()
    doc = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "echo", "namespace": "echoes"},
        "spec": {"domain": {"memory": {"guest": "64Mi"}, "devices": {"qats": [{"name": "q", "deviceName": GENERIC}]}}},
    }
    (tmp_path / "vmis/echo.env").write_text("QAT0=0000:3e:01.0\n")
    (tmp_path / "vmis/echo.yaml").write_text(yaml.safe_dump(doc))
    settings = AgentSettings(
        connect="test:///default",
        vmi_dir=tmp_path / "vmis",
        state_dir=tmp_path / "state",
        host_root=host,
        render=RenderSettings(
            log_dir=str(tmp_path / "state/logs"), owner="state-dir/echoes", templates=load_templates()
        ),
        on_stop="keep",
    )
    return BareMetalNode(settings, FreshDeviceChecks(host))


def _until(probe: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 15
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail("timed out")
        time.sleep(0.02)


def test_the_agent_makes_one_pass_for_its_own_start_and_one_for_each_outside_event(tmp_path: Path) -> None:
    keeper = libvirt.open("test:///default")  # keeps the test driver's state while the node reconnects
    node = _node(tmp_path)
    passes: list[str] = []
    reconcile = node.reconciler.reconcile
    node.reconciler.reconcile = lambda key: passes.append(key) or reconcile(key)  # type: ignore[method-assign]
    phase = lambda: read_status_file(tmp_path / "state").get("echoes/echo", {}).get("phase")  # noqa: E731
    node.start()
    try:
        _until(lambda: phase() == "Running" and node.engine.wait_idle(1))
        time.sleep(0.3)  # time for a late echo to arrive and (wrongly) queue a pass
        _until(lambda: node.engine.wait_idle(1))
        assert passes == ["echoes/echo"], "define and start caused no second pass"
        assert node.reconciler.echoes.pending() == 0, "both echoes arrived and were used up"
        domain = keeper.lookupByName("echoes_echo")
        domain.destroy()  # the guest stops outside the agent: seen
        _until(lambda: len(passes) >= 2 and phase() != "Running")
        _until(lambda: node.engine.wait_idle(1))
        seen = len(passes)
        domain.create()  # and is started outside the agent: seen too, not taken for an echo
        _until(lambda: len(passes) > seen and phase() == "Running")
    finally:
        node.shutdown(StopPolicy.KEEP)
        for name in ("echoes_echo",):
            domain = keeper.lookupByName(name)
            if domain.isActive():
                domain.destroy()
            domain.undefine()
        keeper.close()
