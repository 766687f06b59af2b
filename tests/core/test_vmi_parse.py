"""VMI manifests in, VMI fields or a refusal naming the exact field path out."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings

from handler.core import vmi_parse
from handler.core.refusal import Refused
from handler.core.vmi import VMI, DeviceRequest, HostDisk, KernelBoot
from handler.core.vmi_parse import parse_vmi, spec_digest
from tests.reliability.strategies import valid_manifests

UID = "6a1f0c9e-0001-4d6b-9e51-000000000001"
DEFAULT_UID = "0b7f3c1e-5a2d-4c6b-9e51-6f0d2a9c8e47"
Edit = Callable[[dict[str, Any]], None]


def base() -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "vm", "namespace": "ns", "uid": UID},
        "spec": {"domain": {"memory": {"guest": "1Gi"}, "devices": {}}},
    }


def put(path: str, value: Any) -> Edit:
    """Set a dotted path (creating objects on the way); the value None deletes the key."""

    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(value)

    return edit


def both(*edits: Edit) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        for each in edits:
            each(doc)

    return edit


def replace_doc(value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda _doc: value


def build(edit: Edit) -> Any:
    doc = base()
    replaced = edit(doc)
    return doc if replaced is None else replaced


QAT = {"name": "qat0", "deviceName": "qat.intel.com/generic"}
HOST_DEV = {"name": "hd0", "deviceName": "qat.intel.com/cy"}
ROOT_DISK = {"name": "root", "disk": {"bus": "virtio"}}
ROOT_VOLUME = {"name": "root", "hostDisk": {"path": "/images/root.img", "type": "Disk"}}
KERNEL = {"kernelArgs": "console=ttyS0", "container": {"kernelPath": "/boot/vmlinuz", "initrdPath": "/boot/initrd"}}


def disks(*entries: dict[str, Any]) -> Edit:
    return put("spec.domain.devices.disks", list(entries))


def volumes(*entries: dict[str, Any]) -> Edit:
    return put("spec.volumes", list(entries))


ACCEPTED: list[Any] = [
    pytest.param(
        lambda _doc: None,
        {
            "namespace": "ns",
            "name": "vm",
            "uid": UID,
            "generation": 1,
            "labels": (),
            "deletion_requested": False,
            "cores": 1,
            "memory_bytes": 2**30,
            "devices": (),
            "kernel_boot": None,
            "disks": (),
            "grace_seconds": 30,
            "domain_name": "ns_vm",
            "key": "ns/vm",
            "node_name": None,
        },
        id="minimal-defaults",
    ),
    pytest.param(
        put("metadata.namespace", None), {"namespace": "default", "domain_name": "default_vm"}, id="ns-default"
    ),
    pytest.param(put("metadata.uid", UID.upper()), {"uid": UID}, id="uid-lower-cased"),
    pytest.param(put("metadata.name", "web.front-1"), {"name": "web.front-1"}, id="name-dns-subdomain"),
    pytest.param(put("metadata.generation", 7), {"generation": 7}, id="generation"),
    pytest.param(
        put("metadata.labels", {"kubevirt.io/nodeName": "node01", "app": "vpn"}),
        {"labels": (("app", "vpn"), ("kubevirt.io/nodeName", "node01")), "node_name": "node01"},
        id="labels-and-node-name",
    ),
    pytest.param(
        put("metadata.deletionTimestamp", "2024-01-01T00:00:00Z"), {"deletion_requested": True}, id="deletion"
    ),
    pytest.param(put("spec.domain.cpu", {"cores": 4, "sockets": 1, "threads": 1}), {"cores": 4}, id="cores-4"),
    pytest.param(put("spec.domain.cpu.cores", 512), {"cores": 512}, id="cores-max"),
    pytest.param(put("spec.domain.memory.guest", "512Mi"), {"memory_bytes": 512 * 2**20}, id="memory-guest"),
    pytest.param(put("spec.domain.memory.guest", 2**30), {"memory_bytes": 2**30}, id="memory-bytes-integer"),
    pytest.param(
        both(put("spec.domain.memory", None), put("spec.domain.resources", {"requests": {"memory": "2Gi"}})),
        {"memory_bytes": 2 * 2**30},
        id="memory-from-requests",
    ),
    pytest.param(
        put("spec.domain.resources", {"requests": {"memory": "4Gi", "cpu": "2"}, "limits": {"memory": "4Gi"}}),
        {"memory_bytes": 2**30},
        id="guest-wins-over-requests",
    ),
    pytest.param(
        put("spec.domain.resources.requests.memory", "lots"), {"memory_bytes": 2**30}, id="requests-unread-when-guest"
    ),
    pytest.param(put("spec.terminationGracePeriodSeconds", 0), {"grace_seconds": 0}, id="grace-0"),
    pytest.param(put("spec.terminationGracePeriodSeconds", 86400), {"grace_seconds": 86400}, id="grace-max"),
    pytest.param(
        both(
            put("spec.domain.devices.qats", [QAT]),
            put("spec.domain.devices.hostDevices", [HOST_DEV, {**HOST_DEV, "name": "hd1", "tag": "x"}]),
        ),
        {
            "devices": (
                DeviceRequest("qat0", "qat.intel.com/generic", "spec.domain.devices.qats[0]"),
                DeviceRequest("hd0", "qat.intel.com/cy", "spec.domain.devices.hostDevices[0]"),
                DeviceRequest("hd1", "qat.intel.com/cy", "spec.domain.devices.hostDevices[1]"),
            )
        },
        id="qats-then-host-devices",
    ),
    pytest.param(
        put("spec.domain.firmware.kernelBoot", KERNEL),
        {"kernel_boot": KernelBoot("/boot/vmlinuz", "/boot/initrd", "console=ttyS0")},
        id="kernel-boot",
    ),
    pytest.param(
        put("spec.domain.firmware.kernelBoot", {"container": {"kernelPath": "/boot/vmlinuz", "image": "x:1"}}),
        {"kernel_boot": KernelBoot("/boot/vmlinuz", None, "")},
        id="kernel-boot-no-initrd-no-args",
    ),
    pytest.param(
        both(
            disks(
                {"name": "root", "serial": "S1", "disk": {}},
                {"name": "data", "disk": {"bus": "sata", "readonly": True}},
            ),
            volumes(
                {"name": "data", "hostDisk": {"path": "/srv/data.img"}},
                {"name": "root", "hostDisk": {"path": "/images/root.img", "type": "Disk"}},
            ),
        ),
        {
            "disks": (
                HostDisk("root", "/images/root.img", "virtio", False, "S1"),
                HostDisk("data", "/srv/data.img", "sata", True, None),
            )
        },
        id="host-disks",
    ),
    pytest.param(put("spec.domain.machine.type", "pc-q35-7.2"), {"cores": 1}, id="machine-q35-versioned"),
    pytest.param(put("apiVersion", "kubevirt.io/v1alpha3"), {"cores": 1, "rng": False}, id="v1alpha3-alias"),
    pytest.param(put("spec.domain.devices.rng", {}), {"rng": True}, id="rng"),
    pytest.param(put("spec.domain.features", {"acpi": {}}), {"cores": 1}, id="acpi-on"),
    pytest.param(
        put(
            "spec.domain.devices",
            {"autoattachSerialConsole": True, "autoattachPodInterface": False, "interfaces": []},
        ),
        {"devices": ()},
        id="harmless-autoattach",
    ),
    pytest.param(
        both(put("spec.nodeSelector", {"a": "b"}), put("spec.tolerations", []), put("spec.priorityClassName", "x")),
        {"cores": 1},
        id="scheduling-fields-allowed",
    ),
]


@pytest.mark.parametrize(("edit", "fields"), ACCEPTED)
def test_manifest_is_read(edit: Edit, fields: dict[str, Any]) -> None:
    vmi = parse_vmi(build(edit))
    assert {name: getattr(vmi, name) for name in fields} == fields


def test_the_seed_era_v1alpha3_is_read_like_v1() -> None:
    doc = base()
    doc["apiVersion"] = "kubevirt.io/v1alpha3"
    assert parse_vmi(doc) == parse_vmi(base())


def test_uid_from_default_when_missing() -> None:
    doc = base()
    del doc["metadata"]["uid"]
    assert parse_vmi(doc, default_uid=DEFAULT_UID).uid == DEFAULT_UID
    doc["metadata"]["uid"] = UID
    assert parse_vmi(doc, default_uid=DEFAULT_UID).uid == UID, "the manifest's own uid wins"


UNSUPPORTED = "UnsupportedField"
INVALID = "InvalidSpec"

REFUSED: list[Any] = [
    # the document itself
    pytest.param(replace_doc([1, 2]), INVALID, "manifest", id="not-an-object"),
    pytest.param(put("apiVersion", "kubevirt.io/v1beta1"), INVALID, "apiVersion", id="api-version"),
    pytest.param(put("kind", "VirtualMachine"), INVALID, "kind", id="kind"),
    # metadata
    pytest.param(put("metadata", None), INVALID, "metadata.name", id="no-metadata"),
    pytest.param(put("metadata.name", "VM"), INVALID, "metadata.name", id="name-upper-case"),
    pytest.param(put("metadata.name", "vm_1"), INVALID, "metadata.name", id="name-underscore"),
    pytest.param(put("metadata.name", "-vm"), INVALID, "metadata.name", id="name-leading-dash"),
    pytest.param(put("metadata.name", 5), INVALID, "metadata.name", id="name-not-string"),
    pytest.param(put("metadata.namespace", "Prod"), INVALID, "metadata.namespace", id="namespace-upper-case"),
    pytest.param(put("metadata.namespace", "a.b"), INVALID, "metadata.namespace", id="namespace-with-dot"),
    pytest.param(put("metadata.uid", None), INVALID, "metadata.uid", id="uid-missing-no-default"),
    pytest.param(put("metadata.uid", "not-a-uuid"), INVALID, "metadata.uid", id="uid-not-uuid"),
    pytest.param(put("metadata.generation", 0), INVALID, "metadata.generation", id="generation-0"),
    pytest.param(put("metadata.labels", ["a"]), INVALID, "metadata.labels", id="labels-list"),
    # unknown fields at every level
    pytest.param(put("spec.running", True), UNSUPPORTED, "spec.running", id="unknown-in-spec"),
    pytest.param(put("spec.domain.clock", {}), UNSUPPORTED, "spec.domain.clock", id="unknown-in-domain"),
    pytest.param(put("spec.domain.devices.gpus", []), UNSUPPORTED, "spec.domain.devices.gpus", id="unknown-in-devices"),
    pytest.param(put("spec.domain.cpu.model", "host"), UNSUPPORTED, "spec.domain.cpu.model", id="unknown-in-cpu"),
    pytest.param(put("spec.domain.cpu.sockets", 2), UNSUPPORTED, "spec.domain.cpu.sockets", id="two-sockets"),
    pytest.param(put("spec.domain.cpu.threads", 2), UNSUPPORTED, "spec.domain.cpu.threads", id="two-threads"),
    pytest.param(
        put("spec.domain.memory.hugepages", {"pageSize": "2Mi"}),
        UNSUPPORTED,
        "spec.domain.memory.hugepages",
        id="unknown-in-memory",
    ),
    pytest.param(
        put("spec.domain.resources.overcommit", 1), UNSUPPORTED, "spec.domain.resources.overcommit", id="unknown-res"
    ),
    pytest.param(
        put("spec.domain.firmware.bootloader", {"efi": {}}),
        UNSUPPORTED,
        "spec.domain.firmware.bootloader",
        id="unknown-in-firmware",
    ),
    pytest.param(
        put("spec.domain.firmware.kernelBoot", {**KERNEL, "initrd": "/x"}),
        UNSUPPORTED,
        "spec.domain.firmware.kernelBoot.initrd",
        id="unknown-in-kernel-boot",
    ),
    pytest.param(
        put("spec.domain.firmware.kernelBoot", {"container": {"kernelPath": "/k", "cmdline": "x"}}),
        UNSUPPORTED,
        "spec.domain.firmware.kernelBoot.container.cmdline",
        id="unknown-in-kernel-boot-container",
    ),
    pytest.param(
        put("spec.domain.features.hyperv", {}), UNSUPPORTED, "spec.domain.features.hyperv", id="unknown-feature"
    ),
    pytest.param(
        put("spec.domain.features.acpi", {"enabled": False}),
        UNSUPPORTED,
        "spec.domain.features.acpi.enabled",
        id="acpi-off",
    ),
    pytest.param(
        put("spec.domain.machine.type", "pc-i440fx-7.2"), UNSUPPORTED, "spec.domain.machine.type", id="machine-i440fx"
    ),
    pytest.param(
        put("spec.domain.devices.interfaces", [{"name": "default"}]),
        INVALID,
        "spec.domain.devices.interfaces[0].name",
        id="interface-without-network",
    ),
    pytest.param(
        put("spec.domain.devices.autoattachPodInterface", True),
        UNSUPPORTED,
        "spec.domain.devices.autoattachPodInterface",
        id="pod-interface",
    ),
    pytest.param(
        put("spec.domain.devices.autoattachGraphicsDevice", True),
        UNSUPPORTED,
        "spec.domain.devices.autoattachGraphicsDevice",
        id="graphics",
    ),
    pytest.param(
        put("spec.domain.devices.autoattachSerialConsole", False),
        UNSUPPORTED,
        "spec.domain.devices.autoattachSerialConsole",
        id="no-serial-console",
    ),
    # memory
    pytest.param(put("spec.domain.memory", None), INVALID, "spec.domain.memory.guest", id="memory-missing"),
    pytest.param(put("spec.domain.memory.guest", "1Gb"), INVALID, "spec.domain.memory.guest", id="memory-1Gb"),
    pytest.param(put("spec.domain.memory.guest", "-1Gi"), INVALID, "spec.domain.memory.guest", id="memory-negative"),
    pytest.param(put("spec.domain.memory.guest", "512Ki"), INVALID, "spec.domain.memory.guest", id="memory-below-1Mi"),
    pytest.param(put("spec.domain.memory.guest", True), INVALID, "spec.domain.memory.guest", id="memory-bool"),
    pytest.param(
        both(put("spec.domain.memory", None), put("spec.domain.resources.requests.memory", "lots")),
        INVALID,
        "spec.domain.resources.requests.memory",
        id="requests-memory-bad",
    ),
    # cores and grace
    pytest.param(put("spec.domain.cpu.cores", 0), INVALID, "spec.domain.cpu.cores", id="cores-0"),
    pytest.param(put("spec.domain.cpu.cores", 513), INVALID, "spec.domain.cpu.cores", id="cores-513"),
    pytest.param(put("spec.domain.cpu.cores", "2"), INVALID, "spec.domain.cpu.cores", id="cores-string"),
    pytest.param(put("spec.domain.cpu.cores", True), INVALID, "spec.domain.cpu.cores", id="cores-bool"),
    pytest.param(
        put("spec.terminationGracePeriodSeconds", -1), INVALID, "spec.terminationGracePeriodSeconds", id="grace-neg"
    ),
    pytest.param(
        put("spec.terminationGracePeriodSeconds", 86401), INVALID, "spec.terminationGracePeriodSeconds", id="grace-big"
    ),
    pytest.param(
        put("spec.terminationGracePeriodSeconds", "30"), INVALID, "spec.terminationGracePeriodSeconds", id="grace-str"
    ),
    # device entries
    pytest.param(
        both(
            put("spec.domain.devices.qats", [QAT]),
            put("spec.domain.devices.hostDevices", [{**HOST_DEV, "name": "qat0"}]),
        ),
        INVALID,
        "spec.domain.devices.hostDevices[0].name",
        id="duplicate-name-across-qats-and-host-devices",
    ),
    pytest.param(
        put("spec.domain.devices.qats", [QAT, QAT]), INVALID, "spec.domain.devices.qats[1].name", id="duplicate-in-qats"
    ),
    pytest.param(
        put("spec.domain.devices.qats", [{**QAT, "name": "qat 0"}]),
        INVALID,
        "spec.domain.devices.qats[0].name",
        id="entry-name-with-space",
    ),
    pytest.param(
        put("spec.domain.devices.qats", [{"deviceName": "qat.intel.com/generic"}]),
        INVALID,
        "spec.domain.devices.qats[0].name",
        id="entry-name-missing",
    ),
    pytest.param(
        put("spec.domain.devices.qats", [{**QAT, "deviceName": "generic"}]),
        INVALID,
        "spec.domain.devices.qats[0].deviceName",
        id="device-name-without-slash",
    ),
    pytest.param(
        put("spec.domain.devices.hostDevices", [{**HOST_DEV, "deviceName": "Qat.Intel.com/x"}]),
        INVALID,
        "spec.domain.devices.hostDevices[0].deviceName",
        id="device-name-upper-domain",
    ),
    pytest.param(
        put("spec.domain.devices.qats", [{"name": "q"}]),
        INVALID,
        "spec.domain.devices.qats[0].deviceName",
        id="device-name-missing",
    ),
    pytest.param(
        put("spec.domain.devices.qats", [{**QAT, "vendor": "intel"}]),
        UNSUPPORTED,
        "spec.domain.devices.qats[0].vendor",
        id="unknown-in-qat-entry",
    ),
    pytest.param(put("spec.domain.devices.qats", QAT), INVALID, "spec.domain.devices.qats", id="qats-not-a-list"),
    pytest.param(put("spec.domain.devices.qats", ["q"]), INVALID, "spec.domain.devices.qats[0]", id="qat-not-object"),
    # kernel boot
    pytest.param(
        put("spec.domain.firmware.kernelBoot", {"container": {"initrdPath": "/boot/initrd"}}),
        INVALID,
        "spec.domain.firmware.kernelBoot.container.kernelPath",
        id="kernel-path-missing",
    ),
    pytest.param(
        put("spec.domain.firmware.kernelBoot", {"container": {"kernelPath": "boot/vmlinuz"}}),
        INVALID,
        "spec.domain.firmware.kernelBoot.container.kernelPath",
        id="kernel-path-relative",
    ),
    pytest.param(
        put("spec.domain.firmware.kernelBoot", {"container": {"kernelPath": "/k", "initrdPath": "initrd"}}),
        INVALID,
        "spec.domain.firmware.kernelBoot.container.initrdPath",
        id="initrd-path-relative",
    ),
    pytest.param(
        put("spec.domain.firmware.kernelBoot", {**KERNEL, "kernelArgs": ["a"]}),
        INVALID,
        "spec.domain.firmware.kernelBoot.kernelArgs",
        id="kernel-args-list",
    ),
    # disks and volumes
    pytest.param(
        both(disks({**ROOT_DISK, "lun": {}}), volumes(ROOT_VOLUME)),
        UNSUPPORTED,
        "spec.domain.devices.disks[0].lun",
        id="unknown-in-disk",
    ),
    pytest.param(
        both(disks({"name": "root", "disk": {"cache": "none"}}), volumes(ROOT_VOLUME)),
        UNSUPPORTED,
        "spec.domain.devices.disks[0].disk.cache",
        id="unknown-in-disk-target",
    ),
    pytest.param(
        both(disks({"name": "root", "disk": {"bus": "scsi"}}), volumes(ROOT_VOLUME)),
        UNSUPPORTED,
        "spec.domain.devices.disks[0].disk.bus",
        id="disk-bus-scsi",
    ),
    pytest.param(
        both(disks({"name": "root", "disk": {"readonly": "false"}}), volumes(ROOT_VOLUME)),
        INVALID,
        "spec.domain.devices.disks[0].disk.readonly",
        id="readonly-quoted",
    ),
    pytest.param(disks(ROOT_DISK), INVALID, "spec.domain.devices.disks[0].name", id="disk-without-volume"),
    pytest.param(
        both(disks(ROOT_DISK, ROOT_DISK), volumes(ROOT_VOLUME)),
        INVALID,
        "spec.domain.devices.disks[1].name",
        id="disk-twice",
    ),
    pytest.param(
        both(disks(ROOT_DISK), volumes(ROOT_VOLUME, {"name": "data", "hostDisk": {"path": "/d.img"}})),
        INVALID,
        "spec.volumes[1].name",
        id="volume-without-disk",
    ),
    pytest.param(
        both(disks(ROOT_DISK), volumes({"name": "root", "containerDisk": {"image": "-x"}})),
        INVALID,
        "spec.volumes[0].containerDisk.image",
        id="container-disk-option-like-image",
    ),
    pytest.param(
        both(disks(ROOT_DISK), volumes({"name": "root", "persistentVolumeClaim": {"claimName": "x"}})),
        UNSUPPORTED,
        "spec.volumes[0].persistentVolumeClaim",
        id="pvc",
    ),
    pytest.param(
        both(disks(ROOT_DISK), volumes({**ROOT_VOLUME, "cloudInitNoCloud": {"userData": "x"}})),
        INVALID,
        "spec.volumes[0].cloudInitNoCloud",
        id="host-disk-plus-another-source",
    ),
    pytest.param(both(disks(ROOT_DISK), volumes({"name": "root"})), INVALID, "spec.volumes[0]", id="volume-no-source"),
    pytest.param(
        both(disks(ROOT_DISK), volumes({"name": "root", "hostDisk": {"path": "/r.img", "type": "DiskOrCreate"}})),
        INVALID,
        "spec.volumes[0].hostDisk.capacity",
        id="disk-or-create-without-capacity",
    ),
    pytest.param(
        both(disks(ROOT_DISK), volumes({"name": "root", "hostDisk": {"path": "r.img"}})),
        INVALID,
        "spec.volumes[0].hostDisk.path",
        id="host-disk-relative",
    ),
    pytest.param(
        both(disks(ROOT_DISK), volumes({"name": "root", "hostDisk": {"path": "/r.img", "cache": "x"}})),
        UNSUPPORTED,
        "spec.volumes[0].hostDisk.cache",
        id="unknown-in-host-disk",
    ),
    pytest.param(
        both(disks(ROOT_DISK), volumes(ROOT_VOLUME, ROOT_VOLUME)), INVALID, "spec.volumes[1].name", id="volume-twice"
    ),
]


@pytest.mark.parametrize(("edit", "reason", "subject"), REFUSED)
def test_manifest_is_refused_naming_the_field(edit: Edit, reason: str, subject: str) -> None:
    with pytest.raises(Refused) as caught:
        parse_vmi(build(edit))
    refusal = caught.value.refusal
    assert (refusal.reason, refusal.subject) == (reason, subject)
    line = refusal.line()
    assert line.startswith(f"{subject} ") and "\n" not in line
    assert "; fix: " in line and refusal.fix


def digest_of(doc: dict[str, Any]) -> str:
    return parse_vmi(doc).spec_digest


def test_spec_digest_ignores_key_order_and_metadata() -> None:
    doc = base()
    doc["spec"]["domain"]["devices"]["qats"] = [QAT]
    doc["spec"]["terminationGracePeriodSeconds"] = 30
    reordered = json.loads(json.dumps(doc))
    reordered["spec"] = dict(reversed(list(reordered["spec"].items())))
    reordered["spec"]["domain"] = dict(reversed(list(reordered["spec"]["domain"].items())))
    reordered["spec"]["domain"]["devices"]["qats"] = [dict(reversed(list(QAT.items())))]
    assert list(reordered["spec"]) != list(doc["spec"])
    relabelled = copy.deepcopy(doc)
    relabelled["metadata"]["labels"] = {"app": "x"}
    assert digest_of(doc) == digest_of(reordered) == digest_of(relabelled)
    assert len(digest_of(doc)) == 16


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(put("spec.domain.cpu.cores", 2), id="cores"),
        pytest.param(put("spec.domain.memory.guest", "2Gi"), id="memory"),
        pytest.param(put("spec.terminationGracePeriodSeconds", 31), id="grace"),
        pytest.param(put("spec.domain.devices.qats", [QAT]), id="devices"),
    ],
)
def test_spec_digest_changes_with_the_spec(edit: Edit) -> None:
    assert digest_of(build(edit)) != digest_of(base())


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(put("spec.nodeSelector", {"a": "b"}), id="node-selector"),
        pytest.param(put("spec.tolerations", [{"key": "qat", "operator": "Exists"}]), id="tolerations"),
        pytest.param(put("spec.priorityClassName", "high"), id="priority"),
    ],
)
def test_spec_digest_ignores_scheduling_fields(edit: Edit) -> None:
    """Scheduling never changes the guest, so it must not mark a running guest RestartRequired."""
    assert digest_of(build(edit)) == digest_of(base())


def test_spec_digest_is_the_function_of_the_spec() -> None:
    doc = base()
    assert spec_digest(doc["spec"]) == parse_vmi(doc).spec_digest
    assert spec_digest({"b": 1, "a": 2}) == spec_digest({"a": 2, "b": 1})


def test_vmi_helpers() -> None:
    vmi: VMI = parse_vmi(
        build(
            both(
                put("spec.domain.devices.qats", [QAT, {**QAT, "name": "q2"}]),
                put("spec.domain.devices.hostDevices", [HOST_DEV]),
            )
        )
    )
    assert vmi.resources() == ("qat.intel.com/generic", "qat.intel.com/cy")


def test_disk_boot_order_and_shared_volume_reach_the_model() -> None:
    doc = base()
    doc["spec"]["domain"]["devices"]["disks"] = [{"name": "root", "bootOrder": 2, "disk": {"bus": "virtio"}}]
    doc["spec"]["volumes"] = [{"name": "root", "hostDisk": {"path": "/img/root.img", "type": "Disk", "shared": True}}]
    disk = parse_vmi(doc).disks[0]
    assert (disk.boot_order, disk.shared) == (2, True)


@pytest.mark.parametrize(
    ("disk_extra", "host_disk_extra", "field"),
    [
        pytest.param({"bootOrder": 0}, {}, "spec.domain.devices.disks[0].bootOrder", id="boot-order-zero"),
        pytest.param({}, {"shared": "yes"}, "spec.volumes[0].hostDisk.shared", id="shared-not-bool"),
        pytest.param({}, {"capacity": "10Gi"}, "spec.volumes[0].hostDisk.capacity", id="capacity-without-create"),
    ],
)
def test_disk_settings_that_would_be_ignored_are_refused(
    disk_extra: dict[str, Any], host_disk_extra: dict[str, Any], field: str
) -> None:
    doc = base()
    doc["spec"]["domain"]["devices"]["disks"] = [{"name": "root", "disk": {"bus": "virtio"}, **disk_extra}]
    doc["spec"]["volumes"] = [{"name": "root", "hostDisk": {"path": "/img/root.img", **host_disk_extra}}]
    with pytest.raises(Refused) as caught:
        parse_vmi(doc)
    assert caught.value.refusal.subject == field


@settings(max_examples=200, deadline=None, database=None)
@given(valid_manifests())
def test_spec_digest_is_the_sha256_of_the_canonical_json(document: dict[str, Any]) -> None:
    spec = dict(document["spec"], nodeSelector={"a": "b"}, extra=float("inf"))
    guest_facing = {key: value for key, value in spec.items() if key not in vmi_parse._SCHEDULING_FIELDS}
    canonical = json.dumps(guest_facing, sort_keys=True, separators=(",", ":"), default=str)
    assert spec_digest(spec) == hashlib.sha256(canonical.encode()).hexdigest()[:16]
