"""The bare-metal agent end to end on libvirt's in-process ``test:///default`` hypervisor.

A real ``BareMetalNode``: a DirectorySource watching a tmp directory, a StatusStore in a
tmp state directory, FreshDeviceChecks on a simulated C62x host with 8 VFs on vfio-pci
(0000:3d:01.0 .. 0000:3d:01.7), and libvirt's test driver.

About ``test:///default`` state (checked by the first test below): every connection opened
in one process shares one driver state for as long as at least one connection to it stays
open; when the last one closes, the state is thrown away and the next open starts from the
stock single ``test`` domain. So this module keeps one ``keeper`` connection open for its
whole run. The nodes open and close their own connections, and a second node (an agent
restart) still sees the first one's domains. The keeper is also how the tests play the
world outside the agent: a guest that powers itself off, or a domain the agent did not make.

Each test uses its own namespace, so its domains never meet another test's, and removes
every domain it caused at the end. Waiting is by polling with a timeout; nothing here
asserts on how long anything took.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import libvirt
import pytest
import yaml
from lxml import etree

from handler.baremetal.node import BareMetalNode
from handler.baremetal.status_store import read_status_file
from handler.core.bdf import Bdf
from handler.core.render_settings import RenderSettings
from handler.core.stop_policy import StopPolicy
from handler.host.domain_templates import load_templates
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host
from handler.settings import AgentSettings

URI = "test:///default"
HOST = SimulatedHost(pfs=(SimulatedPf(family="C62x", bdf=Bdf(0, 0x3D, 0, 0), vfs=8),))
GENERIC = "qat.intel.com/generic"
TIMEOUT = 15.0
T = TypeVar("T")
_namespaces = itertools.count()


def vf(function: int) -> str:
    return f"0000:3d:01.{function}"


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = TIMEOUT) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what} (last seen: {last!r})")


@pytest.fixture(scope="module")
def keeper() -> Iterator[libvirt.virConnect]:
    conn = libvirt.open(URI)
    yield conn
    conn.close()


@dataclass
class World:
    """One test's directories, namespace and the agents it started."""

    root: Path
    keeper: libvirt.virConnect
    namespace: str
    vmi_dir: Path = field(init=False)
    state_dir: Path = field(init=False)
    host_root: Path = field(init=False)
    nodes: list[BareMetalNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.vmi_dir = self.root / "vmis"
        self.state_dir = self.root / "state"
        self.host_root = self.root / "host"
        self.vmi_dir.mkdir()
        build_simulated_host(self.host_root, HOST)

    # -- the agent --------------------------------------------------------------------
    def settings(self, state_dir: Path | None = None) -> AgentSettings:
        state = state_dir or self.state_dir
        return AgentSettings(
            connect=URI,
            vmi_dir=self.vmi_dir,
            state_dir=state,
            host_root=self.host_root,
            render=RenderSettings(domain_type="kvm", log_dir=str(state / "logs"), templates=load_templates()),
            workers=3,
            acpi_resend_seconds=0.5,
            on_stop=StopPolicy.KEEP.value,
        )

    def start_node(
        self, state_dir: Path | None = None, before_start: Callable[[BareMetalNode], None] | None = None
    ) -> BareMetalNode:
        node = BareMetalNode(self.settings(state_dir), FreshDeviceChecks(self.host_root))
        self.nodes.append(node)
        if before_start is not None:
            before_start(node)
        node.start()
        return node

    def stop_nodes(self) -> None:
        while self.nodes:
            self.nodes.pop().shutdown(StopPolicy.KEEP)

    # -- manifests --------------------------------------------------------------------
    def key(self, name: str) -> str:
        return f"{self.namespace}/{name}"

    def domain_name(self, name: str) -> str:
        return f"{self.namespace}_{name}"

    def write(self, filename: str, text: str) -> None:
        """Replace a file in one rename, as an editor or config tool would."""
        temp = self.vmi_dir / f".{filename}.tmp"
        temp.write_text(text)
        os.replace(temp, self.vmi_dir / filename)

    def write_vmi(self, name: str, env: str | None = None, **spec: Any) -> None:
        if env is not None:
            self.write(f"{name}.env", env)
        self.write(f"{name}.yaml", yaml.safe_dump(manifest(name, self.namespace, **spec)))

    def remove(self, filename: str) -> None:
        (self.vmi_dir / filename).unlink()

    # -- what the agent reports ---------------------------------------------------------
    def status(self, name: str) -> dict[str, Any] | None:
        """The VMI's entry in the status file on disk (what ``qat-handler status`` reads)."""
        return read_status_file(self.state_dir).get(self.key(name))

    def wait_status(self, name: str, what: str, test: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status is not None and test(status) else None

        return wait_for(f"{self.key(name)}: {what}", probe)

    def wait_phase(self, name: str, phase: str) -> dict[str, Any]:
        return self.wait_status(name, f"phase {phase}", lambda s: s.get("phase") == phase)

    # -- what libvirt says -------------------------------------------------------------
    def lookup(self, name: str) -> libvirt.virDomain | None:
        try:
            return self.keeper.lookupByName(self.domain_name(name))
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def hostdevs(self, name: str) -> list[str]:
        dom = self.lookup(name)
        assert dom is not None, f"no domain for {name}"
        return hostdev_bdfs(dom.XMLDesc(0))

    def cleanup(self) -> None:
        for dom in self.keeper.listAllDomains(0):
            if dom.name().startswith(f"{self.namespace}_") or dom.name().startswith(f"foreign-{self.namespace}"):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()


def manifest(
    name: str,
    namespace: str,
    devices: list[tuple[str, str]] | None = None,
    field_name: str = "qats",
    extra_domain: dict[str, Any] | None = None,
    grace: int = 5,
) -> dict[str, Any]:
    domain: dict[str, Any] = {
        "cpu": {"cores": 1},
        "memory": {"guest": "256Mi"},
        "devices": {field_name: [{"name": n, "deviceName": r} for n, r in devices or [("qat0", GENERIC)]]},
    }
    domain.update(extra_domain or {})
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"terminationGracePeriodSeconds": grace, "domain": domain},
    }


def hostdev_bdfs(xml: str) -> list[str]:
    root = etree.fromstring(xml.encode())
    found = []
    for address in root.iterfind("devices/hostdev/source/address"):
        domain, bus, slot, function = (int(address.get(part, ""), 16) for part in ("domain", "bus", "slot", "function"))
        found.append(str(Bdf(domain, bus, slot, function)))
    return sorted(found)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), None)


def out_of_sync(reason: str) -> Callable[[dict[str, Any]], bool]:
    def test(status: dict[str, Any]) -> bool:
        sync = condition(status, "Synchronized")
        return sync is not None and sync["status"] == "False" and sync["reason"] == reason

    return test


@pytest.fixture
def world(tmp_path: Path, keeper: libvirt.virConnect) -> Iterator[World]:
    w = World(tmp_path, keeper, f"t{os.getpid() % 1000}-{next(_namespaces)}")
    try:
        yield w
    finally:
        w.stop_nodes()
        w.cleanup()


# -- the test driver itself --------------------------------------------------------------


def test_test_driver_state_is_shared_while_a_connection_is_open(keeper: libvirt.virConnect) -> None:
    xml = "<domain type='test'><name>shared-probe</name><memory>1024</memory><os><type>hvm</type></os></domain>"
    first = libvirt.open(URI)
    first.defineXML(xml)
    first.close()
    second = libvirt.open(URI)
    try:
        assert "shared-probe" in [d.name() for d in second.listAllDomains(0)], "the keeper keeps the state alive"
        second.lookupByName("shared-probe").undefine()
    finally:
        second.close()
    assert "shared-probe" not in [d.name() for d in keeper.listAllDomains(0)]


# -- add ---------------------------------------------------------------------------------


def test_manifests_become_running_domains_with_their_hostdevs(world: World) -> None:
    world.write_vmi("one", env="QAT0=0000:3d:01.0\n")
    world.write_vmi(
        "two",
        env="PCI_RESOURCE_QAT_INTEL_COM_CY=0000:3D:01.2,0000:3d:01.1,\n",
        devices=[("cy0", "qat.intel.com/cy"), ("cy1", "qat.intel.com/cy")],
        field_name="hostDevices",
    )
    node = world.start_node()
    world.write_vmi("late", env="QAT1=0000:3d:01.4\nQAT0=0000:3d:01.3\n", devices=[("a", GENERIC), ("b", GENERIC)])

    expected = {"one": [vf(0)], "two": [vf(1), vf(2)], "late": [vf(3), vf(4)]}
    for name, bdfs in expected.items():
        status = world.wait_phase(name, "Running")
        assert [d["bdf"] for d in status["devices"]] == bdfs
        assert condition(status, "Synchronized")["status"] == "True"  # type: ignore[index]
        dom = world.lookup(name)
        assert dom is not None and dom.isActive()
        assert world.hostdevs(name) == bdfs
        assert any(event["reason"] == "Created" for event in status["events"])
    assert node.reconciler.claims.holder(Bdf(0, 0x3D, 1, 2)) == world.key("two")


# -- change ------------------------------------------------------------------------------


def test_env_change_applies_when_stopped_and_asks_for_restart_when_running(world: World) -> None:
    world.write_vmi("vm", env="QAT0=0000:3d:01.0\n")
    world.start_node()
    world.wait_phase("vm", "Running")
    assert world.hostdevs("vm") == [vf(0)]

    # The guest powers itself off: Succeeded, and it stays off.
    dom = world.lookup("vm")
    assert dom is not None
    dom.shutdown()
    world.wait_phase("vm", "Succeeded")
    assert not world.lookup("vm").isActive()  # type: ignore[union-attr]

    # Changed while stopped: redefined with the new VF and started.
    world.write("vm.env", "QAT0=0000:3d:01.3\n")
    world.wait_status("vm", "Running on 01.3", lambda s: s["phase"] == "Running" and s["devices"][0]["bdf"] == vf(3))
    assert world.hostdevs("vm") == [vf(3)]
    running_id = world.lookup("vm").ID()  # type: ignore[union-attr]

    # Changed while running: the guest keeps its VF and the status asks for a restart.
    world.write("vm.env", "QAT0=0000:3d:01.4\n")
    status = world.wait_status("vm", "RestartRequired", lambda s: condition(s, "RestartRequired") is not None)
    assert status["phase"] == "Running"
    assert [d["bdf"] for d in status["devices"]] == [vf(3)]
    dom = world.lookup("vm")
    assert dom is not None and dom.isActive() and dom.ID() == running_id
    assert world.hostdevs("vm") == [vf(3)]


# -- remove ------------------------------------------------------------------------------


def test_removed_manifest_shuts_down_undefines_and_forgets(world: World) -> None:
    world.write_vmi("gone", env="QAT0=0000:3d:01.0\n")
    world.write_vmi("stays", env="QAT0=0000:3d:01.1\n")
    node = world.start_node()
    world.wait_phase("gone", "Running")
    world.wait_phase("stays", "Running")

    world.remove("gone.yaml")
    wait_for("the domain to be undefined", lambda: world.lookup("gone") is None)
    wait_for("the status to be forgotten", lambda: world.key("gone") not in read_status_file(world.state_dir))
    assert node.reconciler.claims.holder(Bdf(0, 0x3D, 1, 0)) is None, "the VF is free again"
    stays = world.lookup("stays")
    assert stays is not None and stays.isActive()
    assert world.status("stays")["phase"] == "Running"  # type: ignore[index]


# -- bad manifests -----------------------------------------------------------------------


def test_bad_manifests_get_their_refusal_and_do_not_block_the_others(world: World) -> None:
    world.write_vmi("good", env="QAT0=0000:3d:01.0\n")
    world.write("syntax.yaml", "apiVersion: kubevirt.io/v1\nspec: [unclosed\n")
    world.write_vmi("unknown", env="QAT0=0000:3d:01.1\n", extra_domain={"clock": {"utc": {}}})
    world.write_vmi("badenv", env="QAT0=zz:01.1\n")
    world.start_node()

    world.wait_phase("good", "Running")
    unknown = world.wait_status("unknown", "UnsupportedField", out_of_sync("UnsupportedField"))
    assert unknown["phase"] == "Scheduled"
    assert condition(unknown, "Synchronized")["message"].startswith("spec.domain.clock is not supported")  # type: ignore[index]
    badenv = world.wait_status("badenv", "DeviceEnvInvalid", out_of_sync("DeviceEnvInvalid"))
    message = condition(badenv, "Synchronized")["message"]  # type: ignore[index]
    assert message.startswith("QAT0 'zz:01.1' is not a PCI address") and "\n" not in message

    def syntax_status() -> dict[str, Any] | None:
        status = read_status_file(world.state_dir).get("default/syntax")
        return status if status and out_of_sync("InvalidManifest")(status) else None

    syntax = wait_for("default/syntax: InvalidManifest", syntax_status)
    assert condition(syntax, "Synchronized")["message"].startswith("syntax.yaml is not valid YAML/JSON")  # type: ignore[index]
    for name in ("unknown", "badenv"):
        assert world.lookup(name) is None, f"{name} must not get a domain"
    good = world.lookup("good")
    assert good is not None and good.isActive()


def test_a_manifest_that_breaks_while_its_guest_runs_keeps_the_guest_running(world: World) -> None:
    world.write_vmi("vm", env="QAT0=0000:3d:01.0\n")
    world.start_node()
    world.wait_phase("vm", "Running")
    running_id = world.lookup("vm").ID()  # type: ignore[union-attr]

    world.write("vm.yaml", "apiVersion: kubevirt.io/v1\nmetadata: {name: vm\n")
    status = world.wait_status("vm", "InvalidManifest", out_of_sync("InvalidManifest"))
    assert status["phase"] == "Running"
    assert condition(status, "Ready")["status"] == "True"  # type: ignore[index]

    world.write("vm.yaml", yaml.safe_dump(manifest("vm", world.namespace, extra_domain={"clock": {}})))
    status = world.wait_status("vm", "UnsupportedField", out_of_sync("UnsupportedField"))
    assert status["phase"] == "Running"

    world.write("vm.env", "QAT0=not-a-bdf\n")
    world.write_vmi("vm", env=None)
    world.wait_status("vm", "DeviceEnvInvalid", out_of_sync("DeviceEnvInvalid"))

    dom = world.lookup("vm")
    assert dom is not None and dom.isActive() and dom.ID() == running_id, "the guest was never stopped"
    assert world.hostdevs("vm") == [vf(0)]

    world.write("vm.env", "QAT0=0000:3d:01.0\n")
    world.wait_status("vm", "back in sync", lambda s: condition(s, "Synchronized")["status"] == "True")  # type: ignore[index]
    assert world.lookup("vm").ID() == running_id  # type: ignore[union-attr]


# -- device conflicts --------------------------------------------------------------------


def test_two_vmis_asking_for_the_same_vf_exactly_one_runs(world: World) -> None:
    world.write_vmi("left", env="QAT0=0000:3d:01.5\n")
    world.write_vmi("right", env="QAT0=0000:3d:01.5\n")
    world.start_node()

    def settled() -> dict[str, dict[str, Any]] | None:
        statuses = {name: world.status(name) for name in ("left", "right")}
        phases = sorted(str(s.get("phase")) for s in statuses.values() if s)
        return statuses if phases == ["Running", "Scheduled"] else None  # type: ignore[return-value]

    statuses = wait_for("one Running and one Scheduled", settled)
    winner = next(name for name, s in statuses.items() if s["phase"] == "Running")
    loser = next(name for name, s in statuses.items() if s["phase"] == "Scheduled")
    sync = condition(statuses[loser], "Synchronized")
    assert sync is not None and sync["reason"] == "DeviceRejected"
    assert sync["message"].startswith(f"{vf(5)} is already assigned to VMI {world.key(winner)}")
    assert world.hostdevs(winner) == [vf(5)]
    assert world.lookup(loser) is None
    active = [name for name in ("left", "right") if (dom := world.lookup(name)) is not None and dom.isActive()]
    assert active == [winner]


def test_a_vf_held_by_a_domain_the_agent_does_not_manage_is_rejected(world: World) -> None:
    foreign = f"foreign-{world.namespace}"
    world.keeper.defineXML(
        f"""<domain type='test'><name>{foreign}</name><memory>1024</memory><os><type>hvm</type></os>
        <devices><hostdev mode='subsystem' type='pci' managed='no'><source>
        <address domain='0x0000' bus='0x3d' slot='0x01' function='0x6'/></source></hostdev></devices></domain>"""
    )
    world.write_vmi("vm", env="QAT0=0000:3d:01.6\n")
    world.write_vmi("fine", env="QAT0=0000:3d:01.7\n")
    world.start_node()

    status = world.wait_status("vm", "DeviceRejected", out_of_sync("DeviceRejected"))
    message = condition(status, "Synchronized")["message"]  # type: ignore[index]
    assert message.startswith(f"{vf(6)} is already assigned to domain {foreign}, which qat-handler does not manage")
    assert world.lookup("vm") is None
    world.wait_phase("fine", "Running")
    assert world.keeper.lookupByName(foreign).XMLDesc(0).count("<hostdev") == 1, "the foreign domain is untouched"


# -- restart -----------------------------------------------------------------------------


@dataclass
class Calls:
    seen: list[tuple[str, str]] = field(default_factory=list)

    def spy(self, node: BareMetalNode) -> None:
        """Count what the new agent asks of libvirt, by wrapping its hypervisor's methods."""
        hypervisor = node.hypervisor
        for operation in ("define", "start", "request_shutdown", "destroy", "undefine"):
            real = getattr(hypervisor, operation)
            setattr(hypervisor, operation, self._wrap(operation, real))

    def _wrap(self, operation: str, real: Callable[[str], None]) -> Callable[[str], None]:
        def call(argument: str) -> None:
            self.seen.append((operation, argument[:40]))
            real(argument)

        return call


@pytest.mark.parametrize("keep_state", [True, False], ids=["same-state-dir", "status-file-lost"])
def test_a_restarted_agent_adopts_running_domains_without_touching_them(world: World, keep_state: bool) -> None:
    world.write_vmi("a", env="QAT0=0000:3d:01.0\n")
    world.write_vmi("b", env="QAT0=0000:3d:01.1\nQAT1=0000:3d:01.2\n", devices=[("x", GENERIC), ("y", GENERIC)])
    first = world.start_node()
    for name in ("a", "b"):
        world.wait_phase(name, "Running")
    ids = {name: world.lookup(name).ID() for name in ("a", "b")}  # type: ignore[union-attr]
    world.stop_nodes()  # --on-stop keep: the guests stay up; the keeper keeps the driver state
    assert first.hypervisor.connection.connected is False
    assert {name: world.lookup(name).ID() for name in ("a", "b")} == ids  # type: ignore[union-attr]

    state_dir = world.state_dir if keep_state else world.root / "fresh-state"
    calls = Calls()
    second = world.start_node(state_dir, before_start=calls.spy)
    assert second.wait_synced(TIMEOUT)

    def running_in(state: Path) -> bool:
        vmis = read_status_file(state)
        return all(vmis.get(world.key(n), {}).get("phase") == "Running" for n in ("a", "b"))

    wait_for("both VMIs reported Running by the new agent", lambda: running_in(state_dir))
    assert calls.seen == [], f"the new agent touched the domains {len(calls.seen)} times: {calls.seen[:4]}"
    assert {name: world.lookup(name).ID() for name in ("a", "b")} == ids  # type: ignore[union-attr]
    assert second.reconciler.claims.holder(Bdf(0, 0x3D, 1, 2)) == world.key("b")
    assert second.reconciler.claims.holder(Bdf(0, 0x3D, 1, 0)) == world.key("a")


def test_a_status_left_by_a_crash_between_undefine_and_forget_is_forgotten_at_start(world: World) -> None:
    world.write_vmi("gone", env="QAT0=0000:3d:01.0\n")
    world.start_node()
    world.wait_phase("gone", "Running")
    world.stop_nodes()  # --on-stop keep
    # What a kill -9 between UndefineDomain and ForgetVMI leaves: no manifest, no domain, a status.
    (world.vmi_dir / "gone.yaml").unlink()
    (world.vmi_dir / "gone.env").unlink()
    domain = world.lookup("gone")
    assert domain is not None
    domain.destroy()
    domain.undefine()
    assert world.key("gone") in read_status_file(world.state_dir)
    second = world.start_node()
    assert second.wait_synced(TIMEOUT)
    wait_for("the stale status forgotten", lambda: world.key("gone") not in read_status_file(world.state_dir) or None)


def test_status_file_is_json_a_separate_reader_can_parse(world: World) -> None:
    world.write_vmi("vm", env="QAT0=0000:3d:01.0\n")
    world.start_node()
    world.wait_phase("vm", "Running")
    document = json.loads((world.state_dir / "status.json").read_text())
    entry = document["vmis"][world.key("vm")]
    assert entry["domain"] == world.domain_name("vm")
    assert entry["devices"] == [
        {"name": "qat0", "resource": GENERIC, "bdf": vf(0), "source": "QAT0..QATn"},
    ]
