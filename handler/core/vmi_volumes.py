"""``spec.domain.devices.disks`` joined with their ``spec.volumes[].hostDisk`` sources."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handler.core.fields import boolean, integer, invalid, mapping, only_known, sequence, string, unsupported
from handler.core.vmi import HostDisk
from handler.core.vmi_schema import known

BUSES = ("virtio", "sata")


def parse_disks(devices: Mapping[str, Any], spec: Mapping[str, Any]) -> tuple[HostDisk, ...]:
    volumes = _host_disk_paths(spec)
    disks: list[HostDisk] = []
    seen: dict[str, str] = {}
    for index, entry in enumerate(sequence(devices.get("disks"), "spec.domain.devices.disks")):
        path = f"spec.domain.devices.disks[{index}]"
        item = mapping(entry, path)
        only_known(item, path, known("spec.domain.devices.disks[]"))
        name = string(item.get("name"), f"{path}.name")
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
        serial = string(item.get("serial"), f"{path}.serial", required=False) or None
        readonly = boolean(disk.get("readonly"), f"{path}.disk.readonly", default=False)
        boot_order = None
        if item.get("bootOrder") is not None:
            boot_order = integer(item.get("bootOrder"), f"{path}.bootOrder", default=1, low=1, high=1000)
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
        file_path = string(host_disk.get("path"), f"{path}.hostDisk.path")
        if not file_path.startswith("/"):
            raise invalid(f"{path}.hostDisk.path", f"{file_path!r} is not absolute", "use an absolute host path")
        if name in paths:
            raise invalid(f"{path}.name", f"{name!r} is used twice", "give every volume a unique name")
        shared = boolean(host_disk.get("shared"), f"{path}.hostDisk.shared", default=False)
        paths[name] = (index, file_path, shared)
    return paths
