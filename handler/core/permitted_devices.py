"""Which PCI devices the agent may pass through, and for which resource names.

The operator's list has KubeVirt's ``permittedHostDevices`` shape::

    pciHostDevices:
      - pciVendorSelector: "8086:37c9"
        resourceName: qat.intel.com/generic
        externalResourceProvider: true

It either extends the built-in table (every QAT VF ID, for any ``qat.intel.com/*`` resource)
or replaces it. A device satisfies a request for a resource only when an entry for its
vendor:device names that resource, so a plugin's ``foo.example/nic`` cannot smuggle in a QAT VF.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from handler.core.qat_ids import FAMILIES, INTEL_VENDOR
from handler.core.refusal import Refusal, Refused

_SELECTOR = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{4})$")


class PermitMode(StrEnum):
    EXTEND = "extend"
    """The operator's entries are added to the built-in QAT table."""
    REPLACE = "replace"
    """Only the operator's entries count."""


@dataclass(frozen=True, slots=True)
class PermittedDevice:
    vendor: int
    device: int
    resource_name: str
    """A resource name, or ``domain/*`` for every resource of that domain."""
    external_resource_provider: bool = True
    """KubeVirt's flag; kept for round-tripping. This agent never runs a device plugin itself."""

    @property
    def selector(self) -> str:
        return f"{self.vendor:04x}:{self.device:04x}"

    def selects(self, vendor: int, device: int) -> bool:
        return self.vendor == vendor and self.device == device

    def serves(self, resource: str) -> bool:
        if self.resource_name.endswith("/*"):
            return resource.startswith(self.resource_name[:-1])
        return resource == self.resource_name


BUILTIN: tuple[PermittedDevice, ...] = tuple(
    PermittedDevice(INTEL_VENDOR, family.vf_device, "qat.intel.com/*") for family in FAMILIES
)


@dataclass(frozen=True, slots=True)
class PermittedDevices:
    operator: tuple[PermittedDevice, ...] = ()
    mode: PermitMode = PermitMode.EXTEND

    @property
    def entries(self) -> tuple[PermittedDevice, ...]:
        return self.operator if self.mode is PermitMode.REPLACE else BUILTIN + self.operator

    def entries_for(self, vendor: int, device: int) -> tuple[PermittedDevice, ...]:
        return tuple(entry for entry in self.entries if entry.selects(vendor, device))

    def selects(self, vendor: int, device: int) -> bool:
        return any(entry.selects(vendor, device) for entry in self.entries)

    def serves(self, resource: str) -> bool:
        """Whether any permitted device may back ``resource``: if none can, no node will ever start it."""
        return any(entry.serves(resource) for entry in self.entries)

    def permits(self, vendor: int, device: int, resource: str | None) -> bool:
        """``resource=None`` asks whether the device is permitted for any resource."""
        return any(resource is None or entry.serves(resource) for entry in self.entries_for(vendor, device))


def parse_permitted_devices(
    doc: object, mode: PermitMode = PermitMode.EXTEND, source: str = "permittedHostDevices"
) -> PermittedDevices:
    """Read KubeVirt's ``permittedHostDevices`` object (only ``pciHostDevices`` matters here).

    Raises ``Refused`` naming the first bad field.
    """
    if doc is None:
        return PermittedDevices((), mode)
    if not isinstance(doc, Mapping):
        raise _bad(source, "is not a mapping", "give an object with a pciHostDevices list")
    items = doc.get("pciHostDevices")
    items = [] if items is None else items
    if not isinstance(items, list):
        raise _bad(f"{source}.pciHostDevices", "is not a list", "give a list of selector entries")
    return PermittedDevices(tuple(_entry(item, f"{source}.pciHostDevices[{i}]") for i, item in enumerate(items)), mode)


def _entry(item: object, where: str) -> PermittedDevice:
    if not isinstance(item, Mapping):
        raise _bad(where, "is not a mapping", "give pciVendorSelector and resourceName")
    selector = item.get("pciVendorSelector")
    match = _SELECTOR.match(selector.strip().lower()) if isinstance(selector, str) else None
    if match is None:
        raise _bad(f"{where}.pciVendorSelector", f"is {selector!r}, not vendor:device", 'use "8086:37c9"')
    name = item.get("resourceName")
    if not isinstance(name, str) or "/" not in name.strip():
        raise _bad(
            f"{where}.resourceName", f"is {name!r}, not a domain/name resource name", "use qat.intel.com/generic"
        )
    external = item.get("externalResourceProvider", False)
    if not isinstance(external, bool):
        raise _bad(f"{where}.externalResourceProvider", f"is {external!r}, not a boolean", "use true")
    return PermittedDevice(int(match[1], 16), int(match[2], 16), name.strip(), external)


def _bad(subject: str, problem: str, fix: str) -> Refused:
    return Refused(Refusal("InvalidPermittedDevices", subject, problem, fix))
