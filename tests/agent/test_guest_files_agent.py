"""The bare-metal agent prepares guest files before define and removes them after undefine,
on libvirt's in-process ``test:///default`` (a keeper connection holds the driver state)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
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
from tests.support.oci_images import disk_layout, have_tools, qcow2_disk

pytestmark = pytest.mark.skipif(not have_tools("skopeo", "umoci", "qemu-img"), reason="needs skopeo, umoci, qemu-img")
URI = "test:///default"
HOST = SimulatedHost(pfs=(SimulatedPf(family="C62x", bdf=Bdf(0, 0x3D, 0, 0), vfs=8),))
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what} (last seen: {last!r})")


class Node:
    def __init__(self, root: Path, namespace: str) -> None:
        self.root, self.namespace = root, namespace
        self.vmis, self.state, host = root / "vmis", root / "state", root / "host"
        self.vmis.mkdir()
        build_simulated_host(host, HOST)
        settings = AgentSettings(
            connect=URI,
            vmi_dir=self.vmis,
            state_dir=self.state,
            host_root=host,
            render=RenderSettings(
                domain_type="kvm",
                log_dir=str(self.state / "logs"),
                files_dir=str(self.state / "guests"),
                templates=load_templates(),
            ),
            on_stop=StopPolicy.KEEP.value,
        )
        self.node = BareMetalNode(settings, FreshDeviceChecks(host))
        self.node.start()

    def write(self, name: str, volumes: list[dict[str, Any]], disks: list[dict[str, Any]], vf: int) -> None:
        doc = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "domain": {
                    "memory": {"guest": "256Mi"},
                    "devices": {"disks": disks, "qats": [{"name": "qat0", "deviceName": "qat.intel.com/generic"}]},
                },
                "volumes": volumes,
            },
        }
        (self.vmis / f"{name}.env").write_text(f"QAT0=0000:3d:01.{vf}\n")
        (self.vmis / f".{name}.tmp").write_text(yaml.safe_dump(doc))
        os.replace(self.vmis / f".{name}.tmp", self.vmis / f"{name}.yaml")

    def status(self, name: str) -> dict[str, Any] | None:
        return read_status_file(self.state).get(f"{self.namespace}/{name}")

    def synced(self, name: str) -> dict[str, Any] | None:
        status = self.status(name) or {}
        return next((c for c in status.get("conditions", []) if c["type"] == "Synchronized"), None)


@pytest.fixture(scope="module")
def keeper() -> Iterator[libvirt.virConnect]:
    conn = libvirt.open(URI)
    yield conn
    conn.close()


@pytest.fixture
def node(tmp_path: Path, keeper: libvirt.virConnect) -> Iterator[Node]:
    namespace = f"gf{os.getpid() % 10000}"
    node = Node(tmp_path, namespace)
    try:
        yield node
    finally:
        node.node.shutdown(StopPolicy.KEEP)
        for dom in keeper.listAllDomains(0):
            if dom.name().startswith(f"{namespace}_"):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("oci")
    layout = work / "layout"
    disk_layout(layout, "tiny", {"/disk/tiny.qcow2": qcow2_disk(work / "tiny.qcow2")})
    disk_layout(layout, "empty", {"/etc/motd": b"no disk here\n"})
    return layout


def disks_of(keeper: libvirt.virConnect, name: str) -> list[tuple[str, str, str, str, bool]]:
    root = etree.fromstring(keeper.lookupByName(name).XMLDesc(0).encode())
    return [
        (
            d.get("device", ""),
            d.find("driver").get("type", ""),  # type: ignore[union-attr]
            d.find("source").get("file", ""),  # type: ignore[union-attr]
            d.find("target").get("bus", ""),  # type: ignore[union-attr]
            d.find("readonly") is not None,
        )
        for d in root.iterfind("devices/disk")
    ]


def test_every_prepared_disk_is_made_attached_and_removed_with_the_vmi(
    node: Node, keeper: libvirt.virConnect, layout: Path, tmp_path: Path
) -> None:
    host_disk = tmp_path / "data" / "created.img"
    host_disk.parent.mkdir()
    node.write(
        "full",
        volumes=[
            {"name": "root", "containerDisk": {"image": f"oci:{layout}:tiny"}},
            {"name": "ci", "cloudInitNoCloud": {"userData": "#cloud-config\npassword: x\n"}},
            {"name": "scratch", "emptyDisk": {"capacity": "1Gi"}},
            {"name": "data", "hostDisk": {"path": str(host_disk), "type": "DiskOrCreate", "capacity": "64Mi"}},
        ],
        disks=[
            {"name": "root", "disk": {"bus": "virtio"}},
            {"name": "ci", "cdrom": {}},
            {"name": "scratch", "disk": {"bus": "sata"}},
            {"name": "data"},
        ],
        vf=0,
    )
    wait_for("Running", lambda: (node.status("full") or {}).get("phase") == "Running")
    domain = f"{node.namespace}_full"
    uid = keeper.lookupByName(domain).UUIDString()
    folder = node.state / "guests" / uid
    assert sorted(disks_of(keeper, domain)) == sorted(
        [
            ("disk", "qcow2", f"{folder}/disk0.qcow2", "virtio", False),
            ("cdrom", "raw", f"{folder}/disk1.iso", "sata", True),
            ("disk", "raw", f"{folder}/disk2.raw", "sata", False),
            ("disk", "raw", str(host_disk), "virtio", False),
        ]
    )
    assert sorted(p.name for p in folder.iterdir()) == ["disk0.qcow2", "disk1.iso", "disk2.raw"]
    assert host_disk.stat().st_size == 64 << 20

    (node.vmis / "full.yaml").unlink()
    wait_for("the domain to go", lambda: domain not in [d.name() for d in keeper.listAllDomains(0)])
    wait_for("the files to go", lambda: not folder.exists())
    assert host_disk.exists(), "DiskOrCreate images belong to the operator"
    assert (node.state / "images" / "disks").is_dir(), "the image cache outlives the VMI"


def test_a_bad_image_refuses_its_vmi_in_one_line_and_delays_no_other(
    node: Node, keeper: libvirt.virConnect, layout: Path
) -> None:
    node.write(
        "bad",
        volumes=[{"name": "root", "containerDisk": {"image": f"oci:{layout}:empty"}}],
        disks=[{"name": "root"}],
        vf=1,
    )
    node.write(
        "good",
        volumes=[{"name": "ci", "cloudInitConfigDrive": {"userData": "#!/bin/sh\n"}}],
        disks=[{"name": "ci"}],
        vf=2,
    )
    wait_for("good Running", lambda: (node.status("good") or {}).get("phase") == "Running")
    refused = wait_for("bad refused", lambda: (c := node.synced("bad")) and c["reason"] == "ContainerDiskFailed" and c)
    assert refused["message"] == (
        f"volume 'root' containerDisk 'oci:{layout}:empty' is not a usable disk image "
        "(the image has no /disk/*.img or *.qcow2); "
        "fix: check the reference, the registry (--insecure-registry for plain HTTP) and the image's /disk file"
    )
    assert f"{node.namespace}_bad" not in [d.name() for d in keeper.listAllDomains(0)]
    assert (node.status("bad") or {}).get("phase") == "Scheduled"


def test_at_start_files_without_a_domain_are_swept_and_a_domains_files_kept(
    tmp_path: Path, keeper: libvirt.virConnect, layout: Path
) -> None:
    namespace = f"gs{os.getpid() % 10000}"
    first = Node(tmp_path, namespace)
    try:
        first.write("kept", [{"name": "ci", "cloudInitNoCloud": {"userData": "a"}}], [{"name": "ci"}], vf=3)
        wait_for("kept Running", lambda: (first.status("kept") or {}).get("phase") == "Running")
        first.node.shutdown(StopPolicy.KEEP)
        uid = keeper.lookupByName(f"{namespace}_kept").UUIDString()
        stale = first.state / "guests" / "6a1f0c9e-0001-4d6b-9e51-0000000000ee"
        stale.mkdir()
        (stale / "disk0.iso").write_bytes(b"left behind")
        settings = first.node.settings
        again = BareMetalNode(settings, FreshDeviceChecks(settings.host_root))
        again.start()
        try:
            assert not stale.exists()
            assert (first.state / "guests" / uid / "disk0.iso").is_file()
        finally:
            again.shutdown(StopPolicy.KEEP)
    finally:
        for dom in keeper.listAllDomains(0):
            if dom.name().startswith(f"{namespace}_"):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
