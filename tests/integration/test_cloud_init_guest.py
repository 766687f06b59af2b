"""A real guest reads its cloud-init volume: the agent builds the ``cidata`` ISO, attaches it
as a virtio disk (as KubeVirt's QAT example does), and the tiny guest mounts it and prints the
marker from its user-data and the instance id (the VMI uid) on its serial console.

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
from tests.support.guest_image import CIDATA_MARKER, ensure_guest_image, wait_for_serial

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


def test_the_guest_reads_its_user_data_from_the_cidata_volume(ws: Workspace, libvirt_conn: Any) -> None:
    image = ensure_guest_image("cidata")
    marker = f"m-{secrets.token_hex(6)}"
    uid = str(uuid.uuid4())
    manifest = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "cidata", "namespace": key_of("x").split("/")[0], "uid": uid},
        "spec": {
            "terminationGracePeriodSeconds": 10,
            "domain": {
                "memory": {"guest": "256Mi"},
                "devices": {"disks": [{"name": "cloudinitdisk", "disk": {"bus": "virtio"}}]},
                "firmware": {
                    "kernelBoot": {
                        "kernelArgs": image.cmdline,
                        "container": {"kernelPath": str(image.kernel), "initrdPath": str(image.initrd)},
                    }
                },
            },
            "volumes": [
                {
                    "name": "cloudinitdisk",
                    "cloudInitNoCloud": {"userData": f"#cloud-config\n# qat-marker: {marker}\npassword: fedora\n"},
                }
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
        assert line.endswith(f"instance-id={uid} marker={marker}"), line
        iso = ws.state_dir / "guests" / uid / "disk0.iso"
        assert iso.is_file()
        assert status_rows(ws.state_dir)[key_of("cidata")]["phase"] == "Running"

        path.unlink()
        wait_until("the guest's files removed", lambda: not iso.parent.exists(), 60)
        assert domain_name("cidata") not in [d.name() for d in libvirt_conn.listAllDomains(0)]
    finally:
        agent.kill()
        remove_domain(libvirt_conn, domain_name("cidata"))
