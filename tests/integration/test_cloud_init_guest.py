"""A real guest reads its cloud-init volume and its containerDisk: the agent builds the
``cidata`` ISO and attaches it as a virtio disk (as KubeVirt's QAT example does), and puts a
qcow2 overlay on a disk fetched from an OCI layout; the tiny guest mounts the ISO and prints
the marker from its user-data and the instance id (the VMI uid), and prints the first bytes
of the containerDisk, on its serial console.

The agent runs as a CLI subprocess on qemu:///system; the guest boots under TCG.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import libvirt
import pytest

from tests.integration.agent_harness import AgentProcess, Workspace, domain_name, key_of, status_rows, wait_until
from tests.support.guest_image import CIDATA_MARKER, DISK_MARKER, ensure_guest_image, wait_for_serial
from tests.support.oci_images import disk_layout

pytestmark = [pytest.mark.libvirtd, pytest.mark.guest]
BOOT_TIMEOUT = 180.0  # a few seconds here under TCG; generous for a loaded machine


@pytest.fixture
def ws() -> Iterator[Workspace]:
    workspace = Workspace.create()
    yield workspace
    shutil.rmtree(workspace.root, ignore_errors=True)


def remove_domain(conn: Any, name: str) -> None:
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    if dom.isActive():
        dom.destroy()
    dom.undefine()


def test_the_guest_reads_its_user_data_and_its_container_disk(ws: Workspace, libvirt_conn: Any) -> None:
    image = ensure_guest_image("cidata")
    marker = f"m-{secrets.token_hex(6)}"
    disk_marker = f"CONTAINERDISK-{secrets.token_hex(6)}"
    uid = str(uuid.uuid4())
    layout = ws.root / "layout"
    disk_layout(layout, "disk", {"/disk/disk.img": disk_marker.encode().ljust(1 << 20, b"\0")})
    manifest = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "cidata", "namespace": key_of("x").split("/")[0], "uid": uid},
        "spec": {
            "terminationGracePeriodSeconds": 10,
            "domain": {
                "memory": {"guest": "256Mi"},
                "devices": {
                    "disks": [
                        {"name": "containerdisk", "disk": {"bus": "virtio"}},
                        {"name": "cloudinitdisk", "disk": {"bus": "virtio"}},
                    ]
                },
                "firmware": {
                    "kernelBoot": {
                        "kernelArgs": image.cmdline,
                        "container": {"kernelPath": str(image.kernel), "initrdPath": str(image.initrd)},
                    }
                },
            },
            "volumes": [
                {"name": "containerdisk", "containerDisk": {"image": f"oci:{layout}:disk"}},
                {
                    "name": "cloudinitdisk",
                    "cloudInitNoCloud": {"userData": f"#cloud-config\n# qat-marker: {marker}\npassword: fedora\n"},
                },
            ],
        },
    }
    path = ws.vmi_dir / "cidata.json"
    path.with_name(".cidata.tmp").write_text(json.dumps(manifest))
    os.replace(path.with_name(".cidata.tmp"), path)
    agent = AgentProcess(ws, on_stop="keep")
    try:
        wait_for_serial(ws.serial_log("cidata"), CIDATA_MARKER, BOOT_TIMEOUT)
        line = next(x for x in ws.serial("cidata").splitlines() if CIDATA_MARKER in x)
        assert line.endswith(f"dev=/dev/vdb instance-id={uid} marker={marker}"), line
        wait_for_serial(ws.serial_log("cidata"), DISK_MARKER, 30)
        disk_line = next(x for x in ws.serial("cidata").splitlines() if DISK_MARKER in x)
        assert disk_line.endswith(f"dev=/dev/vda head={disk_marker}"), disk_line
        iso = ws.state_dir / "guests" / uid / "disk1.iso"
        assert iso.is_file() and (iso.parent / "disk0.qcow2").is_file()
        assert status_rows(ws.state_dir)[key_of("cidata")]["phase"] == "Running"

        path.unlink()
        wait_until("the guest's files removed", lambda: not iso.parent.exists(), 60)
        assert domain_name("cidata") not in [d.name() for d in libvirt_conn.listAllDomains(0)]
    finally:
        agent.kill()
        remove_domain(libvirt_conn, domain_name("cidata"))
