"""AssignedDevice written down and read back: one field table for every place it is kept.

A VMI's devices are kept in four places: the domain's metadata (XML attributes), the
bare-metal status file and allocation records (JSON objects), and the Kubernetes
annotation (``name=resource@bdf``, comma separated). Each is a ``DeviceFormat`` below:
which fields it keeps, and the source a device read back from it is given. A BDF is
parsed in one place, ``decode``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from handler.core.bdf import parse_bdf
from handler.core.device_env import AssignedDevice

FIELDS: dict[str, Callable[[AssignedDevice], str]] = {
    "name": lambda d: d.name,
    "resource": lambda d: d.resource,
    "bdf": lambda d: str(d.bdf),
    "source": lambda d: d.source,
}
"""Every field a device has, as text, in the order they are written."""


@dataclass(frozen=True, slots=True)
class DeviceFormat:
    fields: tuple[str, ...]
    """The fields this place keeps (a subset of FIELDS, in its order)."""
    source: str | None = None
    """The source a device read back from here gets; None when the place keeps it."""


DOMAIN_METADATA = DeviceFormat(("name", "resource", "bdf", "source"))
STATUS_RECORDS = DeviceFormat(("name", "resource", "bdf", "source"))
ALLOCATOR = "allocator"
ALLOCATION_RECORDS = DeviceFormat(("name", "resource", "bdf"), source=ALLOCATOR)
ANNOTATION = DeviceFormat(("name", "resource", "bdf"), source="annotation")


def encode(device: AssignedDevice, form: DeviceFormat) -> dict[str, str]:
    return {name: FIELDS[name](device) for name in form.fields}


def decode(fields: Mapping[str, object], form: DeviceFormat) -> AssignedDevice | None:
    """The device, or None when its BDF is missing or not a PCI address."""
    bdf = parse_bdf(str(fields.get("bdf", "")))
    if bdf is None:
        return None
    source = form.source if form.source is not None else str(fields.get("source", ""))
    return AssignedDevice(str(fields.get("name", "")), str(fields.get("resource", "")), bdf, source)


def to_annotation(devices: tuple[AssignedDevice, ...]) -> str:
    return ",".join("{name}={resource}@{bdf}".format(**encode(device, ANNOTATION)) for device in devices)


def from_annotation(text: str) -> tuple[AssignedDevice, ...]:
    """Entries without a name or with a bad address are left out."""
    devices = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, rest = item.partition("=")
        resource, _, address = rest.rpartition("@")
        device = decode({"name": name, "resource": resource, "bdf": address}, ANNOTATION) if name else None
        devices.extend([device] if device is not None else [])
    return tuple(devices)
