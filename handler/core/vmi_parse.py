"""Validate a VirtualMachineInstance manifest (as parsed YAML/JSON) into a VMI.

Every rejection is a one-line Refusal naming the field; nothing that would change the
guest is silently ignored.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from handler.core.fields import (
    host_path,
    integer,
    invalid,
    mapping,
    only_known,
    sequence,
    string,
    unsupported,
    xml_string,
)
from handler.core.quantity import parse_bytes
from handler.core.refusal import Refused
from handler.core.vmi import VMI, DeviceRequest, HostDisk, KernelBoot
from handler.core.vmi_networks import parse_interfaces
from handler.core.vmi_schema import MAX_GRACE_SECONDS, MAX_MEMORY_BYTES, known
from handler.core.vmi_volumes import parse_disks

API_VERSION = "kubevirt.io/v1"
API_VERSIONS = (API_VERSION, "kubevirt.io/v1alpha3")
"""Served versions, one schema: the seed-era example VMIs are v1alpha3."""
KIND = "VirtualMachineInstance"
DEFAULT_GRACE_SECONDS = 30

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ENTRY_NAME = re.compile(r"^[a-zA-Z0-9]([-_a-zA-Z0-9]{0,62})$")
_RESOURCE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?$")

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
"""What ``json.dumps(..., sort_keys=True, separators=(",", ":"), default=str)`` builds per call, kept."""

# Fields that steer scheduling or the pod, never what the guest sees.
_SCHEDULING_FIELDS = frozenset(
    (
        "nodeSelector",
        "affinity",
        "tolerations",
        "schedulerName",
        "priorityClassName",
        "evictionStrategy",
        "topologySpreadConstraints",
    )
)


def parse_vmi(manifest: Any, *, default_uid: str | None = None) -> VMI:
    """Parse a manifest or raise Refused naming the first bad field."""
    doc = mapping(manifest, "manifest")
    if doc.get("apiVersion") not in API_VERSIONS:
        raise invalid("apiVersion", f"is {doc.get('apiVersion')!r}", f"set apiVersion: {API_VERSION}")
    if doc.get("kind") != KIND:
        raise invalid("kind", f"is {doc.get('kind')!r}", f"set kind: {KIND}")
    meta = mapping(doc.get("metadata"), "metadata")
    namespace, name, uid = _identity(meta, default_uid)
    spec = mapping(doc.get("spec"), "spec")
    only_known(spec, "spec", known("spec"))
    domain = mapping(spec.get("domain"), "spec.domain")
    only_known(domain, "spec.domain", known("spec.domain"))
    _check_machine(domain)
    _check_features(domain)
    devices_spec = mapping(domain.get("devices"), "spec.domain.devices")
    only_known(devices_spec, "spec.domain.devices", known("spec.domain.devices"))
    _check_autoattach(devices_spec)
    labels = mapping(meta.get("labels"), "metadata.labels")
    return VMI(
        namespace=namespace,
        name=name,
        uid=uid,
        generation=integer(meta.get("generation"), "metadata.generation", default=1, low=1, high=2**62),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        deletion_requested=bool(meta.get("deletionTimestamp")),
        cores=_cores(domain),
        memory_bytes=_memory(domain),
        devices=_device_requests(devices_spec),
        kernel_boot=_kernel_boot(domain),
        disks=parse_disks(devices_spec, spec),
        grace_seconds=integer(
            spec.get("terminationGracePeriodSeconds"),
            "spec.terminationGracePeriodSeconds",
            default=DEFAULT_GRACE_SECONDS,
            low=0,
            high=MAX_GRACE_SECONDS,
        ),
        spec_digest=spec_digest(spec),
        interfaces=parse_interfaces(spec, devices_spec, uid),
        rng=_rng(devices_spec),
    )


def spec_digest(spec: Mapping[str, Any]) -> str:
    """A digest of what the guest sees: scheduling fields are left out, so editing them never
    marks a running guest RestartRequired."""
    guest_facing = {key: value for key, value in spec.items() if key not in _SCHEDULING_FIELDS}
    canonical = _CANONICAL.encode(guest_facing)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _identity(meta: Mapping[str, Any], default_uid: str | None) -> tuple[str, str, str]:
    name = string(meta.get("name"), "metadata.name")
    if not _DNS_SUBDOMAIN.match(name):
        raise invalid("metadata.name", f"{name!r} is not a DNS-1123 name", "use lower-case letters, digits and '-'")
    namespace = string(meta.get("namespace"), "metadata.namespace", required=False) or "default"
    if not _DNS_LABEL.match(namespace):
        raise invalid("metadata.namespace", f"{namespace!r} is not a DNS-1123 label", "use a valid namespace")
    uid = string(meta.get("uid"), "metadata.uid", required=False) or (default_uid or "")
    if not uid:
        raise invalid("metadata.uid", "is missing", "set metadata.uid to a UUID")
    if not _UUID.match(uid):
        raise invalid("metadata.uid", f"{uid!r} is not a UUID", "set metadata.uid to a UUID, or leave it out")
    return namespace, name, uid.lower()


def _cores(domain: Mapping[str, Any]) -> int:
    cpu = mapping(domain.get("cpu"), "spec.domain.cpu")
    only_known(cpu, "spec.domain.cpu", known("spec.domain.cpu"))
    for single in ("sockets", "threads"):
        if cpu.get(single) not in (None, 1):
            raise unsupported(f"spec.domain.cpu.{single}", "only one socket with one thread per core")
    return integer(cpu.get("cores"), "spec.domain.cpu.cores", default=1, low=1, high=512)


def _memory(domain: Mapping[str, Any]) -> int:
    memory = mapping(domain.get("memory"), "spec.domain.memory")
    only_known(memory, "spec.domain.memory", known("spec.domain.memory"))
    resources = mapping(domain.get("resources"), "spec.domain.resources")
    only_known(resources, "spec.domain.resources", known("spec.domain.resources"))
    requests = mapping(resources.get("requests"), "spec.domain.resources.requests")
    for path, raw in (
        ("spec.domain.memory.guest", memory.get("guest")),
        ("spec.domain.resources.requests.memory", requests.get("memory")),
    ):
        if raw is None:
            continue
        size = parse_bytes(raw)
        if size is None or size < 2**20:
            raise invalid(path, f"{raw!r} is not a memory size of at least 1Mi", "use a quantity such as 512Mi")
        if size > MAX_MEMORY_BYTES:
            raise invalid(path, f"{raw!r} is more than 1Pi", "use a quantity such as 512Mi")
        return size
    raise invalid("spec.domain.memory.guest", "is missing", "set spec.domain.memory.guest, e.g. 1Gi")


def _device_requests(devices: Mapping[str, Any]) -> tuple[DeviceRequest, ...]:
    requests: list[DeviceRequest] = []
    seen: dict[str, str] = {}
    for field in ("qats", "hostDevices"):
        for index, entry in enumerate(sequence(devices.get(field), f"spec.domain.devices.{field}")):
            path = f"spec.domain.devices.{field}[{index}]"
            item = mapping(entry, path)
            only_known(item, path, known(f"spec.domain.devices.{field}[]"))
            name = string(item.get("name"), f"{path}.name")
            if not _ENTRY_NAME.match(name):
                raise invalid(f"{path}.name", f"{name!r} is not a valid device name", "use letters, digits, '-' or '_'")
            if name in seen:
                raise invalid(
                    f"{path}.name", f"{name!r} is also used by {seen[name]}", "give every device a unique name"
                )
            seen[name] = path
            resource = string(item.get("deviceName"), f"{path}.deviceName")
            if not _RESOURCE.match(resource):
                raise invalid(
                    f"{path}.deviceName", f"{resource!r} is not a resource name", "use e.g. qat.intel.com/generic"
                )
            requests.append(DeviceRequest(name=name, resource=resource, field=path))
    return tuple(requests)


def _kernel_boot(domain: Mapping[str, Any]) -> KernelBoot | None:
    firmware = mapping(domain.get("firmware"), "spec.domain.firmware")
    only_known(firmware, "spec.domain.firmware", known("spec.domain.firmware"))
    if "kernelBoot" not in firmware:
        return None
    boot = mapping(firmware.get("kernelBoot"), "spec.domain.firmware.kernelBoot")
    only_known(boot, "spec.domain.firmware.kernelBoot", known("spec.domain.firmware.kernelBoot"))
    container = mapping(boot.get("container"), "spec.domain.firmware.kernelBoot.container")
    # image names where the launcher would fetch the files from; on a node the paths are host paths.
    only_known(
        container,
        "spec.domain.firmware.kernelBoot.container",
        known("spec.domain.firmware.kernelBoot.container"),
    )
    kernel = host_path(container.get("kernelPath"), "spec.domain.firmware.kernelBoot.container.kernelPath")
    initrd = host_path(
        container.get("initrdPath"), "spec.domain.firmware.kernelBoot.container.initrdPath", required=False
    )
    args = xml_string(boot.get("kernelArgs"), "spec.domain.firmware.kernelBoot.kernelArgs", required=False)
    return KernelBoot(kernel=kernel, initrd=initrd or None, cmdline=args)


def _check_machine(domain: Mapping[str, Any]) -> None:
    machine = mapping(domain.get("machine"), "spec.domain.machine")
    only_known(machine, "spec.domain.machine", known("spec.domain.machine"))
    kind = machine.get("type")
    if kind not in (None, "", "q35") and not str(kind).startswith("pc-q35"):
        raise unsupported("spec.domain.machine.type", f"{kind!r}; only q35 machines carry PCIe passthrough here")


def _check_features(domain: Mapping[str, Any]) -> None:
    features = mapping(domain.get("features"), "spec.domain.features")
    only_known(features, "spec.domain.features", known("spec.domain.features"), "ACPI is always on")
    acpi = mapping(features.get("acpi"), "spec.domain.features.acpi")
    only_known(acpi, "spec.domain.features.acpi", known("spec.domain.features.acpi"))
    if acpi.get("enabled") is False:
        raise unsupported("spec.domain.features.acpi.enabled", "graceful shutdown needs ACPI")


def _check_autoattach(devices: Mapping[str, Any]) -> None:
    for flag in ("autoattachPodInterface", "autoattachGraphicsDevice"):
        if devices.get(flag) is True:
            why = "list the NIC in interfaces and spec.networks" if flag == "autoattachPodInterface" else "no graphics"
            raise unsupported(f"spec.domain.devices.{flag}", why)
    if devices.get("autoattachSerialConsole") is False:
        raise unsupported("spec.domain.devices.autoattachSerialConsole", "the serial log is always kept")


def _rng(devices: Mapping[str, Any]) -> bool:
    if "rng" not in devices:
        return False
    only_known(
        mapping(devices["rng"], "spec.domain.devices.rng"), "spec.domain.devices.rng", known("spec.domain.devices.rng")
    )
    return True


__all__ = ["API_VERSION", "API_VERSIONS", "KIND", "HostDisk", "KernelBoot", "Refused", "parse_vmi", "spec_digest"]
