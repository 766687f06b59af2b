"""Volume sources the agent prepares: cloud-init, emptyDisk, containerDisk, hostDisk DiskOrCreate.

Accepted shapes become HostDisk entries with a source; every bad shape is refused naming the field.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from handler.core.disk_sources import (
    INLINE_LIMIT_BYTES,
    CloudInit,
    ContainerDisk,
    CreateIfMissing,
    EmptyDisk,
)
from handler.core.image_ref import ImageSource, parse_image
from handler.core.refusal import Refused
from handler.core.vmi import HostDisk
from handler.core.vmi_parse import parse_vmi

UID = "6a1f0c9e-0001-4d6b-9e51-000000000001"


def manifest(disk: dict[str, Any], volume: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "vm", "namespace": "ns", "uid": UID},
        "spec": {
            "domain": {
                "memory": {"guest": "1Gi"},
                "devices": {"disks": [{"name": "root", "disk": {}}, {"name": "extra", **disk}]},
            },
            "volumes": [{"name": "root", "hostDisk": {"path": "/images/root.img"}}, {"name": "extra", **volume}],
        },
    }


def extra(disk: dict[str, Any], volume: dict[str, Any]) -> HostDisk:
    return parse_vmi(manifest(disk, volume)).disks[1]


def refused(disk: dict[str, Any], volume: dict[str, Any]) -> tuple[str, str, str]:
    with pytest.raises(Refused) as caught:
        parse_vmi(manifest(disk, volume))
    refusal = caught.value.refusal
    return refusal.reason, refusal.subject, refusal.line()


VIRTIO = {"disk": {"bus": "virtio"}}


@pytest.mark.parametrize(
    ("disk", "volume", "expected"),
    [
        pytest.param(
            VIRTIO,
            {"cloudInitNoCloud": {"userData": "#cloud-config\n"}},
            HostDisk("extra", "disk1.iso", "virtio", True, source=CloudInit("noCloud", b"#cloud-config\n", None)),
            id="nocloud-on-a-virtio-disk-is-read-only",
        ),
        pytest.param(
            {"cdrom": {}},
            {"cloudInitNoCloud": {"userDataBase64": base64.b64encode(b"hi").decode(), "networkData": "version: 2"}},
            HostDisk(
                "extra", "disk1.iso", "sata", True, device="cdrom", source=CloudInit("noCloud", b"hi", b"version: 2")
            ),
            id="nocloud-cdrom-defaults-to-sata",
        ),
        pytest.param(
            {},
            {"cloudInitConfigDrive": {"secretRef": {"name": "ud"}, "networkDataSecretRef": {"name": "nd"}}},
            HostDisk("extra", "disk1.iso", "virtio", True, source=CloudInit("configDrive", None, None, "ud", "nd")),
            id="configdrive-from-secrets",
        ),
        pytest.param(
            {"disk": {"bus": "sata"}},
            {"emptyDisk": {"capacity": "2Gi"}},
            HostDisk("extra", "disk1.raw", "sata", False, source=EmptyDisk(2 * 2**30)),
            id="empty-disk",
        ),
        pytest.param(
            {},
            {"containerDisk": {"image": "oci:/srv/images:fedora", "path": "/disk/f.qcow2"}},
            HostDisk(
                "extra",
                "disk1.qcow2",
                "virtio",
                False,
                source=ContainerDisk("oci:/srv/images:fedora", "/disk/f.qcow2", "IfNotPresent"),
            ),
            id="container-disk-from-a-layout",
        ),
        pytest.param(
            {},
            {"hostDisk": {"path": "/var/data/disk.img", "type": "DiskOrCreate", "capacity": "1Gi"}},
            HostDisk("extra", "/var/data/disk.img", "virtio", False, source=CreateIfMissing(2**30)),
            id="host-disk-or-create-keeps-its-path",
        ),
    ],
)
def test_sources_are_accepted(disk: dict[str, Any], volume: dict[str, Any], expected: HostDisk) -> None:
    assert extra(disk, volume) == expected


@pytest.mark.parametrize(
    ("disk", "volume", "reason", "subject"),
    [
        pytest.param(
            VIRTIO,
            {"cloudInitNoCloud": {"userData": "x" * (INLINE_LIMIT_BYTES + 1)}},
            "InvalidSpec",
            "spec.volumes[1].cloudInitNoCloud.userData",
            id="user-data-over-the-inline-limit",
        ),
        pytest.param(
            VIRTIO,
            {"cloudInitNoCloud": {"userData": "a", "userDataBase64": "YQ=="}},
            "InvalidSpec",
            "spec.volumes[1].cloudInitNoCloud.userDataBase64",
            id="two-user-data-fields",
        ),
        pytest.param(
            VIRTIO,
            {"cloudInitNoCloud": {"userDataBase64": "not base64!"}},
            "InvalidSpec",
            "spec.volumes[1].cloudInitNoCloud.userDataBase64",
            id="bad-base64",
        ),
        pytest.param(
            VIRTIO, {"cloudInitNoCloud": {}}, "InvalidSpec", "spec.volumes[1].cloudInitNoCloud", id="no-user-data"
        ),
        pytest.param(
            VIRTIO,
            {"cloudInitNoCloud": {"userData": "a", "vendorData": "b"}},
            "UnsupportedField",
            "spec.volumes[1].cloudInitNoCloud.vendorData",
            id="unknown-cloud-init-field",
        ),
        pytest.param(
            {"cdrom": {"bus": "virtio"}},
            {"cloudInitNoCloud": {"userData": "a"}},
            "UnsupportedField",
            "spec.domain.devices.disks[1].cdrom.bus",
            id="cdrom-on-virtio",
        ),
        pytest.param(
            {"cdrom": {"readonly": False}},
            {"emptyDisk": {"capacity": "1Gi"}},
            "InvalidSpec",
            "spec.domain.devices.disks[1].cdrom.readonly",
            id="writable-cdrom",
        ),
        pytest.param(
            {"cdrom": {}, "disk": {}},
            {"emptyDisk": {"capacity": "1Gi"}},
            "InvalidSpec",
            "spec.domain.devices.disks[1].cdrom",
            id="cdrom-and-disk",
        ),
        pytest.param(
            VIRTIO, {"emptyDisk": {}}, "InvalidSpec", "spec.volumes[1].emptyDisk.capacity", id="empty-no-capacity"
        ),
        pytest.param(
            VIRTIO,
            {"emptyDisk": {"capacity": "10"}},
            "InvalidSpec",
            "spec.volumes[1].emptyDisk.capacity",
            id="empty-too-small",
        ),
        pytest.param(
            VIRTIO,
            {"containerDisk": {"image": "img --dest-creds=x"}},
            "InvalidSpec",
            "spec.volumes[1].containerDisk.image",
            id="image-with-a-space",
        ),
        pytest.param(
            VIRTIO,
            {"containerDisk": {"image": "oci:relative/dir"}},
            "InvalidSpec",
            "spec.volumes[1].containerDisk.image",
            id="oci-relative",
        ),
        pytest.param(
            VIRTIO,
            {"containerDisk": {"image": "a/b", "path": "../etc/shadow"}},
            "InvalidSpec",
            "spec.volumes[1].containerDisk.path",
            id="inner-path-relative",
        ),
        pytest.param(
            VIRTIO,
            {"containerDisk": {"image": "a/b", "imagePullSecret": "s"}},
            "UnsupportedField",
            "spec.volumes[1].containerDisk.imagePullSecret",
            id="pull-secret",
        ),
        pytest.param(
            VIRTIO,
            {"containerDisk": {"image": "a/b", "imagePullPolicy": "Sometimes"}},
            "InvalidSpec",
            "spec.volumes[1].containerDisk.imagePullPolicy",
            id="pull-policy",
        ),
        pytest.param(
            VIRTIO,
            {"hostDisk": {"path": "/x.img", "type": "Disk", "capacity": "1Gi"}},
            "UnsupportedField",
            "spec.volumes[1].hostDisk.capacity",
            id="capacity-on-plain-host-disk",
        ),
        pytest.param(
            VIRTIO,
            {"emptyDisk": {"capacity": "1Gi"}, "cloudInitNoCloud": {"userData": "a"}},
            "InvalidSpec",
            "spec.volumes[1].cloudInitNoCloud",
            id="two-sources",
        ),
    ],
)
def test_bad_sources_are_refused_naming_the_field(
    disk: dict[str, Any], volume: dict[str, Any], reason: str, subject: str
) -> None:
    got_reason, got_subject, line = refused(disk, volume)
    assert (got_reason, got_subject) == (reason, subject)
    assert "\n" not in line and "fix:" in line


def test_over_size_user_data_names_the_limit_and_the_secret_way() -> None:
    _, _, line = refused(VIRTIO, {"cloudInitNoCloud": {"userData": "x" * 5000}})
    assert "5000 bytes, over the 2048-byte inline limit" in line
    assert "secretRef" in line


def test_user_data_at_the_limit_is_accepted() -> None:
    disk = extra(VIRTIO, {"cloudInitNoCloud": {"userData": "x" * INLINE_LIMIT_BYTES}})
    assert isinstance(disk.source, CloudInit) and disk.source.user_data == b"x" * INLINE_LIMIT_BYTES


def test_multi_line_base64_is_decoded_like_kubevirt() -> None:
    encoded = base64.b64encode(b"#cloud-config\npassword: x\n").decode()
    folded = encoded[:10] + "\n" + encoded[10:] + "\n"
    disk = extra(VIRTIO, {"cloudInitNoCloud": {"userDataBase64": folded}})
    assert isinstance(disk.source, CloudInit) and disk.source.user_data == b"#cloud-config\npassword: x\n"


@pytest.mark.parametrize(
    ("image", "source", "argv"),
    [
        (
            "example.org/disks/fedora:39",
            ImageSource("docker", "example.org/disks/fedora:39"),
            "docker://example.org/disks/fedora:39",
        ),
        ("oci:/srv/layout", ImageSource("oci", "/srv/layout"), "oci:/srv/layout"),
        ("oci:/srv/layout:a/b:1", ImageSource("oci", "/srv/layout", "a/b:1"), "oci:/srv/layout:a/b:1"),
        ("oci-archive:/srv/d.tar", ImageSource("oci-archive", "/srv/d.tar"), "oci-archive:/srv/d.tar"),
    ],
)
def test_image_references_map_to_one_skopeo_argument(image: str, source: ImageSource, argv: str) -> None:
    parsed = parse_image(image, "image")
    assert parsed == source
    assert parsed.skopeo() == argv
    assert not parsed.skopeo().startswith("-")
