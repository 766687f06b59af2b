"""`qat-handler render` of a networked VMI as a user types it: the pod network becomes the
--default-network libvirt network, with the NIC's stable MAC, plus rng and the pty console."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from handler.core.vmi_networks import stable_mac
from tests.cli.test_cli import run_cli

UID = "6a1f0c9e-0031-4d6b-9e51-000000000031"
MANIFEST = f"""\
apiVersion: kubevirt.io/v1alpha3
kind: VirtualMachineInstance
metadata: {{name: web, namespace: edge, uid: {UID}}}
spec:
  networks: [{{name: default, pod: {{}}}}]
  domain:
    memory: {{guest: 512Mi}}
    devices:
      rng: {{}}
      interfaces: [{{name: default, masquerade: {{}}, model: e1000e}}]
"""


def test_render_puts_the_pod_network_on_the_default_network(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifest = tmp_path / "web.yaml"
    manifest.write_text(MANIFEST)
    code, out, err = run_cli(capsys, "render", str(manifest), "--default-network", "nat0", "--state-dir", str(tmp_path))
    assert code == 0, err
    root = etree.fromstring(out.encode())
    nic = root.find("devices/interface")
    assert nic is not None
    assert nic.get("type") == "network" and nic.find("source").get("network") == "nat0"  # type: ignore[union-attr]
    assert nic.find("mac").get("address") == stable_mac(UID, "default")  # type: ignore[union-attr]
    assert nic.find("model").get("type") == "e1000e"  # type: ignore[union-attr]
    assert root.findtext("devices/rng/backend") == "/dev/urandom"
    assert root.find("devices/serial").get("type") == "pty"  # type: ignore[union-attr]
    assert root.find("devices/serial/log").get("file") == f"{tmp_path}/logs/edge_web.serial.log"  # type: ignore[union-attr]


def test_render_refuses_an_unsupported_binding_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifest = tmp_path / "web.yaml"
    manifest.write_text(MANIFEST.replace("masquerade: {}", "sriov: {}"))
    code, out, err = run_cli(capsys, "render", str(manifest))
    assert code != 0 and out == ""
    assert err.count("\n") == 1
    assert "spec.domain.devices.interfaces[0].sriov is not supported" in err


def test_render_shows_a_host_bridge_as_a_bridge(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    host = tmp_path / "host"
    (host / "sys/class/net/br-storage/bridge").mkdir(parents=True)
    manifest = tmp_path / "web.yaml"
    multus = "{name: default, multus: {networkName: br-storage}}"
    manifest.write_text(MANIFEST.replace("{name: default, pod: {}}", multus).replace("masquerade", "bridge"))
    code, out, err = run_cli(capsys, "render", str(manifest), "--host-root", str(host))
    assert code == 0, err
    nic = etree.fromstring(out.encode()).find("devices/interface")
    assert nic is not None and nic.get("type") == "bridge"
    assert nic.find("source").get("bridge") == "br-storage"  # type: ignore[union-attr]
