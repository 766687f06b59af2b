"""The guest-files module: cloud-init ISOs, empty disks, DiskOrCreate images, removal."""

from __future__ import annotations

import io
import json
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pycdlib
import pytest

from handler.core.cloudinit_data import iso_content
from handler.core.disk_sources import CloudInit
from handler.core.vmi import VMI
from handler.core.vmi_parse import parse_vmi
from handler.host.guest_files import GuestFiles

UID = "6a1f0c9e-0001-4d6b-9e51-0000000000aa"


def vmi(*pairs: tuple[dict[str, Any], dict[str, Any]], uid: str = UID, name: str = "vm") -> VMI:
    disks = [{"name": f"d{i}", **disk} for i, (disk, _) in enumerate(pairs)]
    volumes = [{"name": f"d{i}", **volume} for i, (_, volume) in enumerate(pairs)]
    return parse_vmi(
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": "ns", "uid": uid},
            "spec": {"domain": {"memory": {"guest": "1Gi"}, "devices": {"disks": disks}}, "volumes": volumes},
        }
    )


def read_iso(path: Path) -> tuple[str, dict[str, bytes]]:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        label = iso.pvd.volume_identifier.decode().strip()
        files: dict[str, bytes] = {}
        for root, _dirs, names in iso.walk(rr_path="/"):
            for name in names:
                full = f"{root.rstrip('/')}/{name}"
                out = io.BytesIO()
                iso.get_file_from_iso_fp(out, rr_path=full)
                files[full.lstrip("/")] = out.getvalue()
        return label, files
    finally:
        iso.close()


def test_nocloud_iso_holds_user_meta_and_network_data(tmp_path: Path) -> None:
    guest = vmi(({}, {"cloudInitNoCloud": {"userData": "#cloud-config\npassword: x\n", "networkData": "version: 2\n"}}))
    assert GuestFiles(tmp_path).prepare(guest).refusal is None
    iso = tmp_path / UID / "disk0.iso"
    label, files = read_iso(iso)
    assert label == "cidata"
    assert files == {
        "meta-data": f'instance-id: "{UID}"\nlocal-hostname: "vm"\n'.encode(),
        "user-data": b"#cloud-config\npassword: x\n",
        "network-config": b"version: 2\n",
    }
    assert stat.S_IMODE(iso.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / UID).stat().st_mode) == 0o711


def test_config_drive_iso_has_the_openstack_layout(tmp_path: Path) -> None:
    guest = vmi(({}, {"cloudInitConfigDrive": {"userData": "#!/bin/sh\necho hi\n", "networkData": "{}"}}))
    assert GuestFiles(tmp_path).prepare(guest).refusal is None
    label, files = read_iso(tmp_path / UID / "disk0.iso")
    assert label == "config-2"
    assert sorted(files) == [
        "openstack/latest/meta_data.json",
        "openstack/latest/network_data.json",
        "openstack/latest/user_data",
    ]
    assert json.loads(files["openstack/latest/meta_data.json"])["uuid"] == UID
    assert files["openstack/latest/user_data"] == b"#!/bin/sh\necho hi\n"


def test_a_changed_user_data_rebuilds_the_iso(tmp_path: Path) -> None:
    files = GuestFiles(tmp_path)
    files.prepare(vmi(({}, {"cloudInitNoCloud": {"userData": "one"}})))
    files.prepare(vmi(({}, {"cloudInitNoCloud": {"userData": "two"}})))
    assert read_iso(tmp_path / UID / "disk0.iso")[1]["user-data"] == b"two"


def test_user_data_is_never_interpreted(tmp_path: Path) -> None:
    hostile = "$(touch /tmp/owned); `id`; ../../etc/passwd\x00"
    data = iso_content(CloudInit("noCloud", hostile.encode(), None), UID, "vm", hostile.encode(), None)
    assert dict(data.files)["user-data"] == hostile.encode()
    GuestFiles(tmp_path).prepare(vmi(({}, {"cloudInitNoCloud": {"userData": hostile}})))
    assert read_iso(tmp_path / UID / "disk0.iso")[1]["user-data"] == hostile.encode()
    assert sorted(p.name for p in (tmp_path / UID).iterdir()) == ["disk0.iso"]


def test_empty_disk_is_sparse_private_and_kept_until_removed(tmp_path: Path) -> None:
    files = GuestFiles(tmp_path)
    guest = vmi(({"disk": {"bus": "sata"}}, {"emptyDisk": {"capacity": "1Gi"}}))
    assert files.prepare(guest).refusal is None
    disk = tmp_path / UID / "disk0.raw"
    info = disk.stat()
    assert info.st_size == 2**30 and info.st_blocks == 0
    assert stat.S_IMODE(info.st_mode) == 0o600
    disk.write_bytes(b"guest data")  # the guest wrote to it; a second prepare keeps it
    files.prepare(guest)
    assert disk.read_bytes() == b"guest data"
    files.remove(UID)
    assert not (tmp_path / UID).exists()


def test_disk_or_create_makes_a_missing_image_and_never_shrinks_one(tmp_path: Path) -> None:
    path = tmp_path / "data" / "disk.img"
    path.parent.mkdir()
    files = GuestFiles(tmp_path / "guests")
    guest = vmi(({}, {"hostDisk": {"path": str(path), "type": "DiskOrCreate", "capacity": "64Mi"}}))
    assert files.prepare(guest).refusal is None
    assert path.stat().st_size == 64 * 2**20 and path.stat().st_blocks == 0
    path.write_bytes(b"x" * 4096)  # now smaller than the capacity, with content
    assert files.prepare(guest).refusal is None
    assert path.read_bytes() == b"x" * 4096
    files.remove(UID)
    assert path.exists(), "a hostDisk is the operator's: never removed with the VMI"


def test_disk_or_create_without_its_directory_is_refused(tmp_path: Path) -> None:
    guest = vmi(({}, {"hostDisk": {"path": str(tmp_path / "no" / "d.img"), "type": "DiskOrCreate", "capacity": "1Mi"}}))
    prepared = GuestFiles(tmp_path / "guests").prepare(guest)
    assert prepared.refusal is not None
    assert prepared.refusal.line() == f"hostDisk {tmp_path}/no/d.img has no parent directory; fix: create the directory"


def test_a_vmi_without_prepared_disks_touches_nothing(tmp_path: Path) -> None:
    files = GuestFiles(tmp_path / "guests")
    assert files.prepare(vmi(({}, {"hostDisk": {"path": "/images/root.img"}}))).refusal is None
    assert not (tmp_path / "guests").exists()


def test_remove_ignores_what_is_not_a_uid(tmp_path: Path) -> None:
    (tmp_path / "keep").mkdir()
    files = GuestFiles(tmp_path)
    for bad in ("..", "keep", "", "/"):
        files.remove(bad)
    assert (tmp_path / "keep").is_dir()


class Secrets:
    def __init__(self, data: dict[str, Mapping[str, bytes]]) -> None:
        self.data = data
        self.asked: list[tuple[str, str]] = []

    def read(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        self.asked.append((namespace, name))
        return self.data.get(name)


def test_secret_refs_are_read_from_the_vmi_namespace(tmp_path: Path) -> None:
    secrets = Secrets({"ud": {"userdata": b"#cloud-config\n"}, "nd": {"networkData": b"version: 2\n"}})
    guest = vmi(({}, {"cloudInitNoCloud": {"secretRef": {"name": "ud"}, "networkDataSecretRef": {"name": "nd"}}}))
    assert GuestFiles(tmp_path, secrets=secrets).prepare(guest).refusal is None
    assert secrets.asked == [("ns", "ud"), ("ns", "nd")]
    files = read_iso(tmp_path / UID / "disk0.iso")[1]
    assert (files["user-data"], files["network-config"]) == (b"#cloud-config\n", b"version: 2\n")


@pytest.mark.parametrize(
    ("secrets", "line"),
    [
        (
            None,
            "volume 'd0' secretRef 'ud' needs Kubernetes to be read; fix: put the data inline on bare metal",
        ),
        (
            Secrets({}),
            "volume 'd0' secretRef 'ud' does not exist; fix: create it in namespace ns with key userdata",
        ),
        (
            Secrets({"ud": {"other": b""}}),
            "volume 'd0' secretRef 'ud' has no key userdata or userData; "
            "fix: create it in namespace ns with key userdata",
        ),
    ],
)
def test_secret_problems_refuse_with_one_line(tmp_path: Path, secrets: Secrets | None, line: str) -> None:
    guest = vmi(({}, {"cloudInitNoCloud": {"secretRef": {"name": "ud"}}}))
    prepared = GuestFiles(tmp_path, secrets=secrets).prepare(guest)
    assert prepared.refusal is not None and prepared.refusal.line() == line
    assert prepared.retry_after is not None


def test_a_refused_vmi_leaves_no_file_behind(tmp_path: Path) -> None:
    guest = vmi(
        ({}, {"emptyDisk": {"capacity": "1Gi"}}),
        ({}, {"cloudInitNoCloud": {"userData": "a", "networkDataSecretRef": {"name": "nd"}}}),
    )
    prepared = GuestFiles(tmp_path, secrets=Secrets({})).prepare(guest)
    assert prepared.refusal is not None and prepared.refusal.reason == "SecretMissing"
    assert list(tmp_path.iterdir()) == []


def test_sweep_keeps_the_uids_asked_for_and_nothing_but_vmi_directories_goes(tmp_path: Path) -> None:
    keep, stale = "6a1f0c9e-0001-4d6b-9e51-000000000001", "6a1f0c9e-0001-4d6b-9e51-000000000002"
    for name in (keep, stale, "not-a-uid"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "disk0.raw").write_bytes(b"x")
    GuestFiles(tmp_path).sweep({keep})
    assert sorted(p.name for p in tmp_path.iterdir()) == [keep, "not-a-uid"]
