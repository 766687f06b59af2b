"""The guest-facing devices of a domain beyond disks and VFs: NICs, the RNG, the guest agent channel."""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from handler.core.attachments import Attachment
from handler.core.bdf import Bdf
from handler.core.templates import DomainTemplates
from handler.core.vmi import VMI
from handler.core.vmi_networks import Interface

NIC_ALIAS_PREFIX = "ua-net-"


def add_guest_devices(
    anchor: etree._Element, vmi: VMI, attachments: Sequence[Attachment], templates: DomainTemplates
) -> None:
    """Insert the devices before ``anchor`` (the serial port), in a fixed order."""
    by_name = {attachment.interface: attachment for attachment in attachments}
    for interface in vmi.interfaces:
        anchor.addprevious(_interface(interface, by_name[interface.name], templates))
    if vmi.rng:
        anchor.addprevious(templates.template("rng.xml"))
    if vmi.interfaces:
        anchor.addprevious(templates.template("guest-agent.xml"))


def _interface(interface: Interface, attachment: Attachment, templates: DomainTemplates) -> etree._Element:
    element = templates.template("interface.xml")
    element.set("type", attachment.kind)
    _child(element, "mac").set("address", interface.mac)
    _child(element, "source").set(attachment.kind, attachment.source)
    _child(element, "model").set("type", interface.model)
    _child(element, "alias").set("name", NIC_ALIAS_PREFIX + interface.name)
    if interface.pci_address is not None:
        element.append(pci_address(interface.pci_address))
    return element


def pci_address(bdf: Bdf) -> etree._Element:
    return etree.Element(
        "address",
        type="pci",
        domain=f"0x{bdf.domain:04x}",
        bus=f"0x{bdf.bus:02x}",
        slot=f"0x{bdf.slot:02x}",
        function=f"0x{bdf.function:x}",
    )


def _child(element: etree._Element, tag: str) -> etree._Element:
    found = element.find(tag)
    if found is None:
        raise LookupError(f"template is missing <{tag}>")
    return found
