"""The agent's own ``<metadata>`` element inside a domain: who the domain belongs to.

It is how a restarted agent recognises its domains, and the only place a removed
manifest's grace period and devices are still known.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from handler.core.device_codec import DOMAIN_METADATA, decode, encode
from handler.core.device_env import AssignedDevice

METADATA_NS = "urn:qat-handler:domain:1"
METADATA_PREFIX = "qat"
_Q = f"{{{METADATA_NS}}}"


@dataclass(frozen=True, slots=True)
class DomainIdentity:
    namespace: str
    name: str
    uid: str
    generation: int
    digest: str
    grace_seconds: int
    devices: tuple[AssignedDevice, ...]
    owner: str = ""
    """The agent instance that manages the domain; other agents on the same libvirt leave it alone."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def owned_by(self, owner: str) -> bool:
        # An empty owner on either side is the single-agent default (and domains written before
        # owners existed), so it matches.
        return not owner or not self.owner or self.owner == owner


def identity_element(identity: DomainIdentity) -> etree._Element:
    root = etree.Element(_Q + "instance", nsmap={METADATA_PREFIX: METADATA_NS})
    for tag, value in (
        ("namespace", identity.namespace),
        ("name", identity.name),
        ("uid", identity.uid),
        ("generation", str(identity.generation)),
        ("digest", identity.digest),
        ("grace-seconds", str(identity.grace_seconds)),
        ("owner", identity.owner),
    ):
        if value or tag != "owner":
            etree.SubElement(root, _Q + tag).text = value
    devices = etree.SubElement(root, _Q + "devices")
    for device in identity.devices:
        etree.SubElement(devices, _Q + "device", encode(device, DOMAIN_METADATA))
    return root


def read_identity(domain_xml: str | bytes) -> DomainIdentity | None:
    """Our identity from a whole domain XML, or None if the domain is not ours (or unreadable)."""
    root = _parse_xml(domain_xml)
    found = None if root is None else root.find(f"metadata/{_Q}instance")
    return None if found is None else _parse(found)


def read_identity_element(element_xml: str | bytes) -> DomainIdentity | None:
    """Our identity from the element libvirt returns for our namespace (it drops the prefix)."""
    root = _parse_xml(element_xml)
    return None if root is None else _parse(root)


def _parse_xml(text: str | bytes) -> etree._Element | None:
    try:
        return etree.fromstring(text.encode() if isinstance(text, str) else text)
    except etree.XMLSyntaxError:
        return None


def _parse(element: etree._Element) -> DomainIdentity | None:
    fields = {etree.QName(child).localname: child for child in element}

    def text(tag: str) -> str:
        child = fields.get(tag)
        return (child.text or "").strip() if child is not None else ""

    devices: list[AssignedDevice] = []
    listed = fields.get("devices")
    for item in [] if listed is None else list(listed):
        device = decode(item.attrib, DOMAIN_METADATA)
        if device is None:
            return None
        devices.append(device)
    try:
        generation, grace = int(text("generation")), int(text("grace-seconds"))
    except ValueError:
        return None
    if not (text("namespace") and text("name") and text("uid")):
        return None
    return DomainIdentity(
        namespace=text("namespace"),
        name=text("name"),
        uid=text("uid"),
        generation=generation,
        digest=text("digest"),
        grace_seconds=grace,
        devices=tuple(devices),
        owner=text("owner"),
    )
