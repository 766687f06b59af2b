"""KubeVirt's own QAT example VMI (examples/kubevirt/vmi-qat.yaml), run the way the README
says: make its containerDisk image available in a local image store, then run the demo on it.

The manifest is KubeVirt's file as published; the first test pins its content, so nobody
"fixes" the example to suit the agent.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from handler.host.oci_layout import tagged
from tests.support.oci_images import have_tools

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "kubevirt"
REFERENCE = "registry:5000/kubevirt/fedora-cloud-container-disk-demo:devel"
UPSTREAM = {
    "apiVersion": "kubevirt.io/v1alpha3",
    "kind": "VirtualMachineInstance",
    "metadata": {"labels": {"special": "vmi-qat"}, "name": "vmi-qat"},
    "spec": {
        "domain": {
            "devices": {
                "disks": [
                    {"disk": {"bus": "virtio"}, "name": "containerdisk"},
                    {"disk": {"bus": "virtio"}, "name": "cloudinitdisk"},
                ],
                "qats": [{"deviceName": "qat.intel.com/generic", "name": "qat1"}],
                "rng": {},
            },
            "machine": {"type": ""},
            "resources": {"requests": {"memory": "1024M"}},
        },
        "terminationGracePeriodSeconds": 0,
        "volumes": [
            {"containerDisk": {"image": REFERENCE}, "name": "containerdisk"},
            {
                "cloudInitNoCloud": {"userData": "#cloud-config\npassword: fedora\nchpasswd: { expire: False }"},
                "name": "cloudinitdisk",
            },
        ],
    },
}
needs_tools = pytest.mark.skipif(not have_tools("umoci", "skopeo", "qemu-img"), reason="needs umoci, skopeo, qemu-img")


def test_the_example_is_kubevirts_file_as_published() -> None:
    assert yaml.safe_load((EXAMPLE / "vmi-qat.yaml").read_text()) == UPSTREAM


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("store") / "images"
    done = subprocess.run(
        [str(EXAMPLE / "make-image-store.sh"), str(store)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert tagged(store, REFERENCE)
    return store


def run_demo(vmi_dir: Path, store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handler", "demo", "--vmi-dir", str(vmi_dir), "--image-store", str(store)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=REPO,
    )


@needs_tools
def test_the_example_runs_exactly_as_written_with_its_image_from_the_store(store: Path) -> None:
    """The README's two commands, on the example directory itself."""
    done = run_demo(EXAMPLE, store)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "demo done: 1 VMIs reached Running" in done.stdout
    assert "vda (virtio, disk, qcow2): " in done.stdout and "/disk0.qcow2" in done.stdout
    assert "vdb (virtio, disk, raw): " in done.stdout and "/disk1.iso" in done.stdout
    assert 'alias name="ua-qat-qat1"' in done.stdout


@needs_tools
def test_without_the_store_the_example_is_refused_in_one_line(tmp_path: Path) -> None:
    manifest = yaml.safe_load((EXAMPLE / "vmi-qat.yaml").read_text())
    manifest["spec"]["volumes"][0]["containerDisk"]["imagePullPolicy"] = "Never"
    (tmp_path / "vmi-qat.yaml").write_text(yaml.safe_dump(manifest))
    shutil.copy(EXAMPLE / "vmi-qat.env", tmp_path / "vmi-qat.env")
    done = subprocess.run(
        [sys.executable, "-m", "handler", "demo", "--vmi-dir", str(tmp_path), "--timeout", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert (
        f"volume 'containerdisk' containerDisk '{REFERENCE}' is not in the image cache and imagePullPolicy is Never"
        in done.stdout
    )
