"""libvirt's side of guest networking: which names are libvirt networks, and what addresses a
running guest's NICs got (DHCP leases of libvirt networks, then the QEMU guest agent)."""

from __future__ import annotations

from collections.abc import Callable

import libvirt
from lxml import etree

from handler.core.attachments import Attachment, resolve_on_host
from handler.core.interface_status import GuestAddress
from handler.core.vmi import VMI
from handler.virt.connection import Connection
from handler.virt.errors import wrap

AGENT_CHANNEL = "org.qemu.guest_agent.0"


class LibvirtNetworks:
    """Bare metal: pod -> the default libvirt network; multus X -> libvirt network X, else host bridge X."""

    def __init__(self, connection: Connection, default_network: str, is_bridge: Callable[[str], bool]) -> None:
        self.connection = connection
        self.default_network = default_network
        self.is_bridge = is_bridge
        """Whether a name is a bridge on the host (sysfs, read by the host layer)."""

    def attachments(self, vmi: VMI) -> tuple[Attachment, ...]:
        return resolve_on_host(vmi, self.default_network, self._network_active, self.is_bridge)

    def _network_active(self, name: str) -> bool | None:
        try:
            return bool(self.connection.get().networkLookupByName(name).isActive())
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                return None
            raise wrap(error, f"look up network {name}") from None


def interface_addresses(conn: libvirt.virConnect, name: str) -> tuple[GuestAddress, ...]:
    """Best effort and never raising: a guest without an address yet is normal, not an error."""
    try:
        dom = conn.lookupByName(name)
        root = etree.fromstring(dom.XMLDesc(0).encode())
    except libvirt.libvirtError:
        return ()
    found = list(_leases(conn, root))
    if _agent_connected(root):
        found.extend(_from_agent(dom))
    return tuple(found)


def _leases(conn: libvirt.virConnect, root: etree._Element) -> list[GuestAddress]:
    found = []
    for nic in root.iterfind("devices/interface[@type='network']"):
        mac, source = nic.find("mac"), nic.find("source")
        if mac is None or source is None or not source.get("network"):
            continue
        try:
            leases = conn.networkLookupByName(source.get("network")).DHCPLeases(mac.get("address"))
        except libvirt.libvirtError:
            continue
        addresses = tuple(str(lease["ipaddr"]) for lease in leases if lease.get("ipaddr"))
        found.append(GuestAddress(str(mac.get("address")).lower(), addresses))
    return found


def _agent_connected(root: etree._Element) -> bool:
    target = root.find(f"devices/channel/target[@name='{AGENT_CHANNEL}']")
    return target is not None and target.get("state") == "connected"


def _from_agent(dom: libvirt.virDomain) -> list[GuestAddress]:
    try:
        interfaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT)
    except libvirt.libvirtError:
        return []  # no agent in the guest, or it does not answer: the leases still count
    found = []
    for details in interfaces.values():
        mac = str(details.get("hwaddr") or "").lower()
        addresses = tuple(
            str(item["addr"])
            for item in details.get("addrs") or []
            if item.get("addr") and not _loopback_or_link_local(str(item["addr"]))
        )
        if mac and addresses:
            found.append(GuestAddress(mac, addresses))
    return found


def _loopback_or_link_local(address: str) -> bool:
    return address.startswith(("127.", "fe80:", "::1"))
