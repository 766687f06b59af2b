"""``spec.domain.devices.disks`` joined with their ``spec.volumes`` sources.

Each volume source has one parser in ``_SOURCES``; a source not in the table is refused by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from handler.core.disk_sources import (
    CloudInit,
    ContainerDisk,
    CreateIfMissing,
    DiskSource,
    EmptyDisk,
    file_name,
    made_by_agent,
)
from handler.core.fields import (
    boolean,
    host_path,
    integer,
    invalid,
    mapping,
    matching,
    only_known,
    sequence,
    string,
    unsupported,
)
from handler.core.image_ref import parse_image
from handler.core.quantity import parse_bytes
from handler.core.vmi import HostDisk
from handler.core.vmi_cloudinit import FLAVOURS, parse_cloud_init
from handler.core.vmi_schema import known

BUSES = ("virtio", "sata")
CDROM_BUSES = ("sata",)
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
# libvirt's schema: a disk name becomes the alias ua-disk-<name>; a serial is what QEMU shows the guest.
_ALIAS_SAFE = re.compile(r"[a-zA-Z0-9_.-]+")
_SERIAL = re.compile(r"[A-Za-z0-9_.+ -]+")


@dataclass(frozen=True, slots=True)
class _Volume:
    index: int
    path: str
    """The host path of a hostDisk; empty for sources whose file the agent names."""
    shared: bool = False
    source: DiskSource | None = None


def parse_disks(devices: Mapping[str, Any], spec: Mapping[str, Any]) -> tuple[HostDisk, ...]:
    volumes = _volumes(spec)
    disks: list[HostDisk] = []
    seen: dict[str, str] = {}
    boot_orders: dict[int, str] = {}
    for index, entry in enumerate(sequence(devices.get("disks"), "spec.domain.devices.disks")):
        path = f"spec.domain.devices.disks[{index}]"
        item = mapping(entry, path)
        only_known(item, path, known("spec.domain.devices.disks[]"))
        name = matching(item.get("name"), f"{path}.name", _ALIAS_SAFE, "letters, digits, '-', '_' and '.'")
        if name in seen:
            raise invalid(f"{path}.name", f"{name!r} is also used by {seen[name]}", "give every disk a unique name")
        seen[name] = path
        if name not in volumes:
            raise invalid(f"{path}.name", f"{name!r} names no volume", "add a spec.volumes entry for it")
        volume = volumes.pop(name)
        device, bus, readonly = _target(item, path, volume)
        serial_text = matching(
            item.get("serial"), f"{path}.serial", _SERIAL, "letters, digits, spaces and _.+-", required=False
        )
        serial = serial_text or None
        boot_order = None
        if item.get("bootOrder") is not None:
            boot_order = integer(item.get("bootOrder"), f"{path}.bootOrder", default=1, low=1, high=1000)
            if boot_order in boot_orders:
                raise invalid(
                    f"{path}.bootOrder",
                    f"{boot_order} is also used by {boot_orders[boot_order]}",
                    "give each disk its own",
                )
            boot_orders[boot_order] = path
        file_path = volume.path
        if volume.source is not None and made_by_agent(volume.source):
            file_path = file_name(index, volume.source)
        disks.append(HostDisk(name, file_path, bus, readonly, serial, boot_order, volume.shared, device, volume.source))
    if volumes:
        orphan, volume = next(iter(volumes.items()))
        raise invalid(
            f"spec.volumes[{volume.index}].name",
            f"{orphan!r} has no disk",
            "add a matching spec.domain.devices.disks entry",
        )
    return tuple(disks)


def _target(item: Mapping[str, Any], path: str, volume: _Volume) -> tuple[str, str, bool]:
    """(device, bus, readonly) from the entry's ``disk:`` or ``cdrom:``, KubeVirt's defaults."""
    if "disk" in item and "cdrom" in item:
        raise invalid(f"{path}.cdrom", "is set together with disk", "keep only one of disk and cdrom")
    device = "cdrom" if "cdrom" in item else "disk"
    target = mapping(item.get(device), f"{path}.{device}")
    only_known(target, f"{path}.{device}", known(f"spec.domain.devices.disks[].{device}"))
    buses = CDROM_BUSES if device == "cdrom" else BUSES
    bus = string(target.get("bus"), f"{path}.{device}.bus", required=False) or buses[0]
    if bus not in buses:
        raise unsupported(f"{path}.{device}.bus", f"{bus!r}; use one of {', '.join(buses)}")
    readonly = boolean(target.get("readonly"), f"{path}.{device}.readonly", default=device == "cdrom")
    if device == "cdrom" and not readonly:
        raise invalid(f"{path}.cdrom.readonly", "is false", "a cdrom is read-only; use disk: for a writable disk")
    # cloud-init data is for the guest to read, never to change.
    return device, bus, readonly or isinstance(volume.source, CloudInit)


def _volumes(spec: Mapping[str, Any]) -> dict[str, _Volume]:
    volumes: dict[str, _Volume] = {}
    for index, entry in enumerate(sequence(spec.get("volumes"), "spec.volumes")):
        path = f"spec.volumes[{index}]"
        item = mapping(entry, path)
        name = string(item.get("name"), f"{path}.name")
        sources = [key for key in item if key != "name"]
        if not sources:
            raise invalid(path, "has no source", f"give it one of {', '.join(_SOURCES)}")
        for key in sources:
            if key not in _SOURCES:
                raise unsupported(f"{path}.{key}", f"volumes may be {', '.join(_SOURCES)}")
        if len(sources) > 1:
            raise invalid(f"{path}.{sources[1]}", f"is set together with {sources[0]}", "give a volume one source")
        if name in volumes:
            raise invalid(f"{path}.name", f"{name!r} is used twice", "give every volume a unique name")
        volumes[name] = _SOURCES[sources[0]](item[sources[0]], f"{path}.{sources[0]}", index)
    return volumes


def _host_disk(value: Any, path: str, index: int) -> _Volume:
    host_disk = mapping(value, path)
    only_known(host_disk, path, known("spec.volumes[].hostDisk"))
    kind = host_disk.get("type", "Disk")
    if kind not in ("Disk", "DiskOrCreate"):
        raise unsupported(f"{path}.type", f"{kind!r}; use Disk or DiskOrCreate")
    source: DiskSource | None = None
    if kind == "DiskOrCreate":
        source = CreateIfMissing(_capacity(host_disk.get("capacity"), f"{path}.capacity"))
    elif host_disk.get("capacity") is not None:
        raise unsupported(f"{path}.capacity", "it only sizes DiskOrCreate images")
    file_path = host_path(host_disk.get("path"), f"{path}.path")
    if "/../" in f"{file_path}/":
        raise invalid(f"{path}.path", f"{file_path!r} is not an absolute path", "use an absolute host path")
    shared = boolean(host_disk.get("shared"), f"{path}.shared", default=False)
    return _Volume(index, file_path, shared, source)


def _empty_disk(value: Any, path: str, index: int) -> _Volume:
    empty = mapping(value, path)
    only_known(empty, path, known("spec.volumes[].emptyDisk"))
    return _Volume(index, "", source=EmptyDisk(_capacity(empty.get("capacity"), f"{path}.capacity")))


def _container_disk(value: Any, path: str, index: int) -> _Volume:
    container = mapping(value, path)
    only_known(container, path, known("spec.volumes[].containerDisk"))
    image = string(container.get("image"), f"{path}.image")
    parse_image(image, f"{path}.image")
    inner = string(container.get("path"), f"{path}.path", required=False) or None
    if inner is not None and (not inner.startswith("/") or "/../" in f"{inner}/"):
        raise invalid(
            f"{path}.path", f"{inner!r} is not an absolute path in the image", "write e.g. /disk/fedora.qcow2"
        )
    policy = string(container.get("imagePullPolicy"), f"{path}.imagePullPolicy", required=False) or "IfNotPresent"
    if policy not in PULL_POLICIES:
        raise invalid(f"{path}.imagePullPolicy", f"{policy!r} is not a pull policy", f"use {', '.join(PULL_POLICIES)}")
    return _Volume(index, "", source=ContainerDisk(image, inner, policy))


def _capacity(raw: Any, path: str) -> int:
    if raw is None:
        raise invalid(path, "is missing", "set a size such as 1Gi")
    size = parse_bytes(raw)
    if size is None or size < 2**20:
        raise invalid(path, f"{raw!r} is not a size of at least 1Mi", "use a quantity such as 1Gi")
    return -(-size // 512) * 512  # whole sectors


def _cloud_init(field: str) -> Callable[[Any, str, int], _Volume]:
    def parse(value: Any, path: str, index: int) -> _Volume:
        return _Volume(index, "", source=parse_cloud_init(field, value, path))

    return parse


_SOURCES: dict[str, Callable[[Any, str, int], _Volume]] = {
    "hostDisk": _host_disk,
    "emptyDisk": _empty_disk,
    "containerDisk": _container_disk,
    **{field: _cloud_init(field) for field in FLAVOURS},
}
