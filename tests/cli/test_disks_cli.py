"""The README's disk and cloud-init claims, through the agent CLI as an operator runs it:
``qat-handler agent --image-store ... --insecure-registry ...`` on test:///default with a
simulated QAT host, watched with ``qat-handler status -o json``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from handler.core.bdf import Bdf
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host
from tests.support.oci_images import disk_layout, have_tools, local_registry, qcow2_disk

pytestmark = pytest.mark.skipif(
    not have_tools("skopeo", "umoci", "qemu-img", "docker-registry"), reason="needs skopeo, umoci, docker-registry"
)
STORE_REF = "registry:5000/kubevirt/fedora-cloud-container-disk-demo:devel"


def vmi(name: str, volume: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": "disks"},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "domain": {
                    "memory": {"guest": "128Mi"},
                    "devices": {
                        "disks": [{"name": "d", "disk": {"bus": "virtio"}}],
                        "qats": [{"name": "qat1", "deviceName": "qat.intel.com/generic"}],
                    },
                },
                "volumes": [{"name": "d", **volume}],
            },
        }
    )


def status(state: Path) -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "handler", "status", "--state-dir", str(state), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {row["name"]: row for row in json.loads(done.stdout)}


def wait(what: str, probe: Any, bound: float = 120.0) -> Any:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def synced(row: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in row.get("conditions", []) if c["type"] == "Synchronized"), {})


@pytest.fixture
def agent_dirs(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    host, vmis, state = tmp_path / "host", tmp_path / "vmis", tmp_path / "state"
    build_simulated_host(host, SimulatedHost(pfs=(SimulatedPf(family="C62x", bdf=Bdf(0, 0x3D, 0, 0), vfs=8),)))
    vmis.mkdir()
    yield host, vmis, state


def test_container_disks_from_a_registry_and_a_store_and_cloud_init_refusals(
    agent_dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    host, vmis, state = agent_dirs
    layout = tmp_path / "store"
    disk_layout(layout, STORE_REF, {"/disk/disk.qcow2": qcow2_disk(tmp_path / "d.qcow2")})
    disk_layout(layout, "tiny", {"/disk/tiny.img": b"\0" * 4096})
    entries = {
        "from-store": {"containerDisk": {"image": STORE_REF}},
        "over-size": {"cloudInitNoCloud": {"userData": "x" * 5000}},
        "secret-ref": {"cloudInitNoCloud": {"secretRef": {"name": "my-user-data"}}},
    }
    with local_registry(tmp_path) as registry:
        entries["from-registry"] = {"containerDisk": {"image": registry.push(layout, "tiny", "disks/tiny:1")}}
        for index, (name, volume) in enumerate(entries.items()):
            (vmis / f"{name}.yaml").write_text(vmi(name, volume))
            (vmis / f"{name}.env").write_text(f"QAT0=0000:3d:01.{index}\n")
        argv = [
            sys.executable, "-m", "handler", "agent",
            "--connect", "test:///default", "--host-root", str(host),
            "--vmi-dir", str(vmis), "--state-dir", str(state),
            "--image-store", str(layout), "--insecure-registry", registry.address,
            "--on-stop", "keep", "--log-format", "json",
        ]  # fmt: skip
        with (tmp_path / "agent.log").open("wb") as log:
            agent = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            rows = wait(
                "both containerDisk VMIs Running",
                lambda: (
                    (r := status(state)).get("from-store", {}).get("phase") == "Running"
                    and r.get("from-registry", {}).get("phase") == "Running"
                    and r
                ),
            )
            assert synced(rows["over-size"])["message"] == (
                "spec.volumes[0].cloudInitNoCloud.userData is 5000 bytes, over the 2048-byte inline limit; "
                "fix: put the data in a Secret and use secretRef"
            )
            assert synced(rows["secret-ref"])["message"] == (
                "volume 'd' secretRef 'my-user-data' needs Kubernetes to be read; "
                "fix: put the data inline on bare metal"
            )
            guests = state / "guests"
            assert len([p for p in guests.iterdir() if (p / "disk0.qcow2").is_file()]) == 2
            for name in entries:
                (vmis / f"{name}.yaml").unlink()
            wait("the guests' files removed", lambda: not any(guests.iterdir()))
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=60)
    assert agent.returncode == 0, (tmp_path / "agent.log").read_text()[-3000:]
    assert os.listdir(state / "images" / "disks"), "the image cache stays"
