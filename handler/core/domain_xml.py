"""Render the libvirt domain XML for a VMI and its assigned devices: a pure function."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from lxml import etree

from handler.core.attachments import Attachment, default_attachments
from handler.core.device_env import AssignedDevice
from handler.core.disk_sources import disk_format, guest_dir, made_by_agent
from handler.core.domain_identity import DomainIdentity, identity_element
from handler.core.guest_devices import add_guest_devices
from handler.core.numa import UNPINNED, Placement
from handler.core.render_settings import RenderSettings
from handler.core.templates import DomainTemplates
from handler.core.vmi import VMI, HostDisk

ALIAS_PREFIX = "ua-qat-"
_TARGET_PREFIX = {"virtio": "vd", "sata": "sd"}
_DOMAIN_PARTS = (
    *("name", "uuid", "metadata", "memory", "vcpu", "os", "os/type", "cpu", "cpu/topology"),
    *("devices/serial", "devices/serial/log"),
)
"""The skeleton's elements that rendering fills in, in the order render_domain unpacks them."""


def desired_digest(
    vmi: VMI, devices: Sequence[AssignedDevice], settings: RenderSettings, placement: Placement = UNPINNED
) -> str:
    """Changes whenever the rendered domain would change, so stale domains can be spotted."""
    parts = [vmi.uid, vmi.spec_digest, settings.fingerprint(), *(f"{d.name}={d.bdf}" for d in devices)]
    if placement.node is not None:  # unpinned guests keep the digest they always had
        parts.append(placement.fingerprint())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def identity_of(
    vmi: VMI, devices: Sequence[AssignedDevice], settings: RenderSettings, placement: Placement = UNPINNED
) -> DomainIdentity:
    return DomainIdentity(
        namespace=vmi.namespace,
        name=vmi.name,
        uid=vmi.uid,
        generation=vmi.generation,
        digest=desired_digest(vmi, devices, settings, placement),
        grace_seconds=vmi.grace_seconds,
        devices=tuple(devices),
        owner=settings.owner,
    )


def serial_log_path(vmi_domain_name: str, settings: RenderSettings) -> str:
    return f"{settings.log_dir.rstrip('/')}/{vmi_domain_name}.serial.log"


def render_domain(
    vmi: VMI,
    devices: Sequence[AssignedDevice],
    settings: RenderSettings,
    attachments: Sequence[Attachment] | None = None,
    placement: Placement = UNPINNED,
) -> str:
    """``attachments`` say where each NIC is plugged in (None: the bare-metal defaults); ``placement``
    pins the guest to a NUMA node."""
    root, (name, uuid, metadata, memory, vcpu, os_element, os_type, cpu, topology, serial, log) = (
        settings.templates.parts("domain.xml", _DOMAIN_PARTS)
    )
    root.set("type", settings.domain_type)
    name.text = vmi.domain_name
    uuid.text = vmi.uid
    metadata.append(identity_element(identity_of(vmi, devices, settings, placement)))
    memory.text = str(-(-vmi.memory_bytes // 1024))
    vcpu.text = str(vmi.cores)
    if placement.node is not None:
        _pin(vcpu, placement)
    os_type.set("machine", settings.machine)
    topology.set("cores", str(vmi.cores))
    if settings.cpu_mode:
        cpu.set("mode", settings.cpu_mode)
    if vmi.kernel_boot:
        etree.SubElement(os_element, "kernel").text = vmi.kernel_boot.kernel
        if vmi.kernel_boot.initrd:
            etree.SubElement(os_element, "initrd").text = vmi.kernel_boot.initrd
        etree.SubElement(os_element, "cmdline").text = vmi.kernel_boot.cmdline
    log.set("file", serial_log_path(vmi.domain_name, settings))
    per_bus: dict[str, int] = {}
    for disk in vmi.disks:
        index = per_bus[disk.bus] = per_bus.get(disk.bus, -1) + 1  # vda, vdb... and sda, sdb... apart
        serial.addprevious(_disk(disk, index, disk_file(vmi, disk, settings), settings.templates))
    for device in devices:
        serial.addprevious(_hostdev(device, settings))
    if attachments is None:
        attachments = default_attachments(vmi, settings.default_network)
    add_guest_devices(serial, vmi, attachments, settings.templates)
    etree.indent(root, space="  ")
    return str(etree.tostring(root, encoding="unicode")) + "\n"


def _pin(vcpu: etree._Element, placement: Placement) -> None:
    """vCPUs on the node's CPUs and memory on the node: the guest sits beside its VFs."""
    vcpu.set("cpuset", placement.cpuset)
    numatune = etree.Element("numatune")
    etree.SubElement(numatune, "memory", mode=placement.memory_mode, nodeset=str(placement.node))
    vcpu.addnext(numatune)


def _hostdev(device: AssignedDevice, settings: RenderSettings) -> etree._Element:
    element, (address, alias) = settings.templates.parts("hostdev.xml", ("source/address", "alias"))
    element.set("managed", "yes" if settings.managed_hostdevs else "no")
    bdf = device.bdf
    address.set("domain", f"0x{bdf.domain:04x}")
    address.set("bus", f"0x{bdf.bus:02x}")
    address.set("slot", f"0x{bdf.slot:02x}")
    address.set("function", f"0x{bdf.function:x}")
    alias.set("name", ALIAS_PREFIX + device.name)
    return element


def disk_file(vmi: VMI, disk: HostDisk, settings: RenderSettings) -> str:
    """The host file behind a disk: the operator's path, or the agent's file in the VMI's directory."""
    if made_by_agent(disk.source):
        return f"{guest_dir(settings.files_dir, vmi.uid)}/{disk.path}"
    return disk.path


def _disk(disk: HostDisk, index: int, path: str, templates: DomainTemplates) -> etree._Element:
    element, (driver, source, target, alias) = templates.parts("disk.xml", ("driver", "source", "target", "alias"))
    element.set("device", disk.device)
    driver.set("type", disk_format(disk.source))
    source.set("file", path)
    target.set("dev", _TARGET_PREFIX[disk.bus] + _drive_letters(index))
    target.set("bus", disk.bus)
    if disk.readonly:
        target.addnext(etree.Element("readonly"))
    if disk.shared:
        target.addnext(etree.Element("shareable"))
    if disk.boot_order is not None:
        target.addnext(etree.Element("boot", order=str(disk.boot_order)))
    if disk.serial:
        etree.SubElement(element, "serial").text = disk.serial
        element.append(alias)  # keep <alias> last, where libvirt writes it back
    alias.set("name", f"ua-disk-{disk.name}")
    return element


def _drive_letters(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return letters
