"""containerDisk images: fetched with skopeo from an OCI layout, an image store or a local
registry into a cache keyed by digest, and used through a qcow2 overlay."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from pathlib import Path

import pytest

from handler.core.disk_sources import ContainerDisk
from handler.core.vmi_parse import parse_vmi
from handler.host.guest_files import GuestFiles
from handler.host.image_cache import Failed, ImageCache, Lookup, Pending, Ready
from tests.support.oci_images import disk_layout, have_tools, local_registry, qcow2_disk

pytestmark = pytest.mark.skipif(
    not have_tools("skopeo", "umoci", "qemu-img", "docker-registry"), reason="needs skopeo, umoci, qemu-img"
)
UID = "6a1f0c9e-0001-4d6b-9e51-0000000000bb"
UPSTREAM = "registry:5000/kubevirt/fedora-cloud-container-disk-demo:devel"


def settle(cache: ImageCache, disk: ContainerDisk, bound: float = 180.0) -> Lookup:
    """Look until the fetch has ended; the bound only stops a hung test."""
    deadline = time.monotonic() + bound
    while True:
        found = cache.lookup(disk)
        if not isinstance(found, Pending):
            return found
        assert time.monotonic() < deadline, "fetch did not end"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("oci")
    disk = qcow2_disk(work / "disk.qcow2", data=b"BASE-IMAGE-MARKER")
    layout = work / "layout"
    disk_layout(layout, "tiny", {"/disk/tiny.qcow2": disk})
    disk_layout(layout, UPSTREAM, {"/disk/tiny.qcow2": disk})
    disk_layout(layout, "raw", {"/disk/root.img": b"\0" * 65536})
    disk_layout(layout, "nodisk", {"/etc/hostname": b"x\n"})
    disk_layout(layout, "corrupt", {"/disk/bad.qcow2": b"QFI\xfb" + b"\xff" * 200})
    backed = work / "backed.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/hostname", str(backed)], check=True
    )
    disk_layout(layout, "backed", {"/disk/b.qcow2": backed})
    disk_layout(layout, "two", {"/disk/a.img": b"a" * 512, "/disk/b.img": b"b" * 512})
    return layout


def test_a_layout_image_is_fetched_once_and_served_from_the_cache(layout: Path, tmp_path: Path) -> None:
    disk = ContainerDisk(f"oci:{layout}:tiny", None, "IfNotPresent")
    cache = ImageCache(tmp_path / "images")
    assert isinstance(cache.lookup(disk), Pending)
    found = settle(cache, disk)
    assert isinstance(found, Ready) and found.format == "qcow2"
    assert found.path.parent.parent == tmp_path / "images" / "disks"
    assert stat.S_IMODE(found.path.stat().st_mode) == 0o444
    # A new agent run reuses the cached digest without running skopeo at all.
    again = ImageCache(tmp_path / "images", skopeo="/nonexistent/skopeo")
    assert again.lookup(disk) == found


def test_an_image_store_serves_a_reference_without_fetching_it(layout: Path, tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images", store=layout)
    found = settle(cache, ContainerDisk(UPSTREAM, None, "IfNotPresent"))
    assert isinstance(found, Ready) and found.path.name == "disk.qcow2"


def test_a_raw_disk_is_served_as_raw(layout: Path, tmp_path: Path) -> None:
    found = settle(ImageCache(tmp_path / "images"), ContainerDisk(f"oci:{layout}:raw", None, "IfNotPresent"))
    assert isinstance(found, Ready) and found.format == "raw" and found.path.stat().st_size == 65536


@pytest.mark.parametrize(
    ("name", "inner", "problem"),
    [
        ("nodisk", None, "is not a usable disk image (the image has no /disk/*.img or *.qcow2)"),
        ("corrupt", None, "is not a usable disk image (its qcow2 disk is corrupt"),
        ("backed", None, "refers to another file; flatten it with qemu-img convert"),
        ("two", None, "more than one disk under /disk; set containerDisk.path"),
        ("missing", None, "could not be fetched ("),
    ],
)
def test_a_bad_image_fails_with_one_line(
    layout: Path, tmp_path: Path, name: str, inner: str | None, problem: str
) -> None:
    found = settle(ImageCache(tmp_path / "images"), ContainerDisk(f"oci:{layout}:{name}", inner, "IfNotPresent"))
    assert isinstance(found, Failed)
    assert problem in found.problem and "\n" not in found.problem
    assert not list((tmp_path / "images" / "disks").iterdir())


def test_path_picks_one_disk_of_several(layout: Path, tmp_path: Path) -> None:
    found = settle(ImageCache(tmp_path / "images"), ContainerDisk(f"oci:{layout}:two", "/disk/b.img", "IfNotPresent"))
    assert isinstance(found, Ready) and found.path.read_bytes() == b"b" * 512


def test_a_failure_is_remembered_until_its_retry_time(layout: Path, tmp_path: Path) -> None:
    now = [0.0]
    cache = ImageCache(tmp_path / "images", retry_seconds=60, clock=lambda: now[0])
    disk = ContainerDisk(f"oci:{layout}:nodisk", None, "IfNotPresent")
    assert isinstance(settle(cache, disk), Failed)
    now[0] = 59.0
    assert isinstance(cache.lookup(disk), Failed)
    now[0] = 61.0
    assert isinstance(cache.lookup(disk), Pending), "after the retry time it is fetched again"
    settle(cache, disk)


def test_never_refuses_an_image_that_is_not_cached(tmp_path: Path) -> None:
    found = ImageCache(tmp_path / "images").lookup(ContainerDisk("example.org/a/b:1", None, "Never"))
    assert found == Failed("is not in the image cache and imagePullPolicy is Never")


def test_a_hung_fetch_does_not_hold_the_caller(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    fake = tmp_path / "skopeo"
    fake.write_text(f"#!/bin/sh\nwhile [ ! -e {gate} ]; do sleep 0.05; done\nexit 1\n")
    fake.chmod(0o755)
    cache = ImageCache(tmp_path / "images", skopeo=str(fake))
    disk = ContainerDisk("example.org/a/b:1", None, "IfNotPresent")
    assert isinstance(cache.lookup(disk), Pending)  # returned while skopeo is still blocked
    assert isinstance(cache.lookup(disk), Pending)
    gate.touch()
    assert isinstance(settle(cache, disk), Failed)


def test_a_registry_image_is_fetched_from_a_local_registry(layout: Path, tmp_path: Path) -> None:
    with local_registry(tmp_path) as registry:
        reference = registry.push(layout, "tiny", "disks/tiny:1")
        tls_only = settle(ImageCache(tmp_path / "strict"), ContainerDisk(reference, None, "IfNotPresent"))
        assert isinstance(tls_only, Failed), "plain HTTP only for registries named insecure"
        cache = ImageCache(tmp_path / "images", insecure_registries=(registry.address,))
        found = settle(cache, ContainerDisk(reference, None, "IfNotPresent"))
        assert isinstance(found, Ready) and found.format == "qcow2"
        missing = settle(cache, ContainerDisk(f"{registry.address}/disks/none:1", None, "IfNotPresent"))
        assert isinstance(missing, Failed) and missing.problem.startswith("could not be fetched (")


def test_the_overlay_keeps_guest_writes_away_from_the_cached_image(layout: Path, tmp_path: Path) -> None:
    image = f"oci:{layout}:tiny"
    manifest = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "vm", "namespace": "ns", "uid": UID},
        "spec": {
            "domain": {"memory": {"guest": "1Gi"}, "devices": {"disks": [{"name": "root"}]}},
            "volumes": [{"name": "root", "containerDisk": {"image": image}}],
        },
    }
    vmi = parse_vmi(manifest)
    cache = ImageCache(tmp_path / "images")
    files = GuestFiles(tmp_path / "guests", cache)
    first = files.prepare(vmi)
    assert first.refusal is not None and first.refusal.reason == "ImagePulling" and first.retry_after == 1.0
    base = settle(cache, ContainerDisk(image, None, "IfNotPresent"))
    assert isinstance(base, Ready)
    assert files.prepare(vmi).refusal is None
    overlay = tmp_path / "guests" / UID / "disk0.qcow2"
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(overlay)], capture_output=True, text=True, check=True
        ).stdout
    )
    assert (info["format"], info["backing-filename"], info["backing-filename-format"]) == (
        "qcow2",
        str(base.path),
        "qcow2",
    )
    assert stat.S_IMODE(overlay.stat().st_mode) == 0o600
    before = base.path.read_bytes()
    wrote = subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x42 0 64k", str(overlay)], capture_output=True, text=True
    )
    assert wrote.returncode == 0, wrote.stdout + wrote.stderr
    assert base.path.read_bytes() == before
    files.remove(UID)
    assert not overlay.exists() and base.path.exists()


def test_an_oci_archive_is_served_too(layout: Path, tmp_path: Path) -> None:
    archive = tmp_path / "tiny.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{layout}:tiny", f"oci-archive:{archive}"], check=True)
    found = settle(ImageCache(tmp_path / "images"), ContainerDisk(f"oci-archive:{archive}", None, "IfNotPresent"))
    assert isinstance(found, Ready) and found.format == "qcow2"
