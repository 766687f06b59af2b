"""``spec.domain.devices.disks`` joined with their ``spec.volumes[].hostDisk`` sources."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

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
from handler.core.vmi import HostDisk
from handler.core.vmi_schema import known

BUSES = ("virtio", "sata")
# libvirt's schema: a disk name becomes the alias ua-disk-<name>; a serial is what QEMU shows the guest.
_ALIAS_SAFE = re.compile(r"[a-zA-Z0-9_.-]+")
_SERIAL = re.compile(r"[A-Za-z0-9_.+ -]+")


def parse_disks(devices: Mapping[str, Any], spec: Mapping[str, Any]) -> tuple[HostDisk, ...]:
    volumes = _host_disk_paths(spec)
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
            raise invalid(f"{path}.name", f"{name!r} names no volume", "add a spec.volumes entry with a hostDisk")
        disk = mapping(item.get("disk"), f"{path}.disk")
        only_known(disk, f"{path}.disk", known("spec.domain.devices.disks[].disk"))
        bus = string(disk.get("bus"), f"{path}.disk.bus", required=False) or "virtio"
        if bus not in BUSES:
            raise unsupported(f"{path}.disk.bus", f"{bus!r}; use one of {', '.join(BUSES)}")
        serial_text = matching(
            item.get("serial"), f"{path}.serial", _SERIAL, "letters, digits, spaces and _.+-", required=False
        )
        serial = serial_text or None
        readonly = boolean(disk.get("readonly"), f"{path}.disk.readonly", default=False)
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
        _, file_path, shared = volumes.pop(name)
        disks.append(HostDisk(name, file_path, bus, readonly, serial, boot_order, shared))
    if volumes:
        orphan, (index, _, _) = next(iter(volumes.items()))
        raise invalid(
            f"spec.volumes[{index}].name", f"{orphan!r} has no disk", "add a matching spec.domain.devices.disks entry"
        )
    return tuple(disks)


def _host_disk_paths(spec: Mapping[str, Any]) -> dict[str, tuple[int, str, bool]]:
    """hostDisk volumes by name: (index in spec.volumes, host path, shared)."""
    paths: dict[str, tuple[int, str, bool]] = {}
    for index, entry in enumerate(sequence(spec.get("volumes"), "spec.volumes")):
        path = f"spec.volumes[{index}]"
        item = mapping(entry, path)
        name = string(item.get("name"), f"{path}.name")
        sources = [key for key in item if key != "name"]
        if sources != ["hostDisk"]:
            other = next((key for key in sources if key != "hostDisk"), "hostDisk")
            if other == "hostDisk":
                raise invalid(f"{path}.hostDisk", "is missing", "give the volume a hostDisk source")
            raise unsupported(f"{path}.{other}", "only hostDisk volumes are supported")
        host_disk = mapping(item["hostDisk"], f"{path}.hostDisk")
        only_known(host_disk, f"{path}.hostDisk", known("spec.volumes[].hostDisk"))
        if host_disk.get("type", "Disk") != "Disk":
            raise unsupported(f"{path}.hostDisk.type", "create the image yourself and use type: Disk")
        if host_disk.get("capacity") is not None:
            raise unsupported(f"{path}.hostDisk.capacity", "it only sizes DiskOrCreate images")
        file_path = host_path(host_disk.get("path"), f"{path}.hostDisk.path")
        if name in paths:
            raise invalid(f"{path}.name", f"{name!r} is used twice", "give every volume a unique name")
        shared = boolean(host_disk.get("shared"), f"{path}.hostDisk.shared", default=False)
        paths[name] = (index, file_path, shared)
    return paths
