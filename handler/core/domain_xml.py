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
    root = settings.templates.template("domain.xml")
    root.set("type", settings.domain_type)
    _text(root, "name", vmi.domain_name)
    _text(root, "uuid", vmi.uid)
    _one(root, "metadata").append(identity_element(identity_of(vmi, devices, settings, placement)))
    _text(root, "memory", str(-(-vmi.memory_bytes // 1024)))
    _text(root, "vcpu", str(vmi.cores))
    if placement.node is not None:
        _pin(root, placement)
    _one(root, "os/type").set("machine", settings.machine)
    _one(root, "cpu/topology").set("cores", str(vmi.cores))
    if settings.cpu_mode:
        _one(root, "cpu").set("mode", settings.cpu_mode)
    if vmi.kernel_boot:
        os_element = _one(root, "os")
        etree.SubElement(os_element, "kernel").text = vmi.kernel_boot.kernel
        if vmi.kernel_boot.initrd:
            etree.SubElement(os_element, "initrd").text = vmi.kernel_boot.initrd
        etree.SubElement(os_element, "cmdline").text = vmi.kernel_boot.cmdline
    _one(root, "devices/serial/log").set("file", serial_log_path(vmi.domain_name, settings))
    serial = _one(root, "devices/serial")
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


def _pin(root: etree._Element, placement: Placement) -> None:
    """vCPUs on the node's CPUs and memory on the node: the guest sits beside its VFs."""
    vcpu = _one(root, "vcpu")
    vcpu.set("cpuset", placement.cpuset)
    numatune = etree.Element("numatune")
    etree.SubElement(numatune, "memory", mode=placement.memory_mode, nodeset=str(placement.node))
    vcpu.addnext(numatune)


def _hostdev(device: AssignedDevice, settings: RenderSettings) -> etree._Element:
    element = settings.templates.template("hostdev.xml")
    element.set("managed", "yes" if settings.managed_hostdevs else "no")
    address = _one(element, "source/address")
    bdf = device.bdf
    address.set("domain", f"0x{bdf.domain:04x}")
    address.set("bus", f"0x{bdf.bus:02x}")
    address.set("slot", f"0x{bdf.slot:02x}")
    address.set("function", f"0x{bdf.function:x}")
    _one(element, "alias").set("name", ALIAS_PREFIX + device.name)
    return element


def disk_file(vmi: VMI, disk: HostDisk, settings: RenderSettings) -> str:
    """The host file behind a disk: the operator's path, or the agent's file in the VMI's directory."""
    if made_by_agent(disk.source):
        return f"{guest_dir(settings.files_dir, vmi.uid)}/{disk.path}"
    return disk.path


def _disk(disk: HostDisk, index: int, path: str, templates: DomainTemplates) -> etree._Element:
    element = templates.template("disk.xml")
    element.set("device", disk.device)
    _one(element, "driver").set("type", disk_format(disk.source))
    _one(element, "source").set("file", path)
    target = _one(element, "target")
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
        element.append(_one(element, "alias"))  # keep <alias> last, where libvirt writes it back
    _one(element, "alias").set("name", f"ua-disk-{disk.name}")
    return element


def _drive_letters(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return letters


def _one(root: etree._Element, path: str) -> etree._Element:
    found = root.find(path)
    if found is None:
        raise LookupError(f"template is missing <{path}>")
    return found


def _text(root: etree._Element, path: str, value: str) -> None:
    _one(root, path).text = value
