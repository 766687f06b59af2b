"""Two agents on one libvirt (a second install, a test run beside production) never touch
each other's guests: each owns the domains it defined, through their metadata."""

from __future__ import annotations

import time
from pathlib import Path

import libvirt
import pytest
import yaml

from handler.baremetal.node import BareMetalNode
from handler.baremetal.status_store import read_status_file
from handler.core.bdf import Bdf
from handler.core.domain_identity import METADATA_NS, read_identity_element
from handler.core.render_settings import RenderSettings
from handler.core.stop_policy import StopPolicy
from handler.host.domain_templates import load_templates
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host
from handler.settings import AgentSettings


def agent(root: Path, owner: str, host: Path) -> BareMetalNode:
    (root / "vmis").mkdir(parents=True)
    settings = AgentSettings(
        connect="test:///default",
        vmi_dir=root / "vmis",
        state_dir=root / "state",
        host_root=host,
        render=RenderSettings(log_dir=str(root / "state/logs"), owner=owner, templates=load_templates()),
        resync_seconds=0.5,
        on_stop="keep",
    )
    return BareMetalNode(settings, FreshDeviceChecks(host))


def manifest(root: Path, name: str, bdf: str) -> None:
    doc = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": "owners"},
        "spec": {
            "domain": {
                "memory": {"guest": "64Mi"},
                "devices": {"qats": [{"name": "q", "deviceName": "qat.intel.com/generic"}]},
            }
        },
    }
    (root / "vmis" / f"{name}.env").write_text(f"QAT0={bdf}\n")
    (root / "vmis" / f"{name}.yaml").write_text(yaml.safe_dump(doc))


def wait(probe, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out: {probe()!r}")


def test_each_agent_keeps_to_its_own_domains(tmp_path: Path) -> None:
    keeper = libvirt.open("test:///default")
    host = tmp_path / "host"
    build_simulated_host(host, SimulatedHost(pfs=(SimulatedPf("C62x", Bdf(0, 0x3D, 0, 0), vfs=4),)))
    first, second = agent(tmp_path / "a", "state-dir/a", host), agent(tmp_path / "b", "state-dir/b", host)
    manifest(tmp_path / "a", "alpha", "0000:3d:01.0")
    manifest(tmp_path / "b", "beta", "0000:3d:01.1")
    manifest(tmp_path / "b", "greedy", "0000:3d:01.0")  # asks for alpha's VF
    first.start()
    try:
        wait(lambda: read_status_file(tmp_path / "a/state").get("owners/alpha", {}).get("phase") == "Running")
        second.start()
        try:
            wait(lambda: read_status_file(tmp_path / "b/state").get("owners/beta", {}).get("phase") == "Running")
            greedy = read_status_file(tmp_path / "b/state")["owners/greedy"]
            assert "owners_alpha" in str(greedy["conditions"])  # refused: the VF is in another agent's domain
            time.sleep(1.5)  # a few resyncs of both agents
            alpha = keeper.lookupByName("owners_alpha")
            assert alpha.isActive()
            identity = read_identity_element(alpha.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS))
            assert identity is not None and identity.owner == "state-dir/a"
            (tmp_path / "b/vmis/beta.yaml").unlink()
            wait(lambda: not [d for d in keeper.listAllDomains() if d.name() == "owners_beta"])
            assert keeper.lookupByName("owners_alpha").isActive()
        finally:
            second.shutdown(StopPolicy.KEEP)
    finally:
        first.shutdown(StopPolicy.KEEP)
        for dom in keeper.listAllDomains():
            if dom.name().startswith("owners_"):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        keeper.close()
