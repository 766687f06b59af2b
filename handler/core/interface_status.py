"""A guest's NICs as KubeVirt reports them: ``status.interfaces[{name, mac, ipAddress, ipAddresses}]``.

The addresses are learned by the shell (DHCP leases of libvirt networks, the guest agent)
and joined to the VMI's interfaces by MAC, so an interface keeps its name in status
whichever source saw it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from handler.core.vmi import VMI


@dataclass(frozen=True, slots=True)
class GuestAddress:
    """What the host learned about one NIC of a running guest."""

    mac: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InterfaceStatus:
    name: str
    mac: str
    ip_addresses: tuple[str, ...] = ()

    @property
    def ip_address(self) -> str:
        """The first address, KubeVirt's ``ipAddress`` (IPv4 first when there is one)."""
        return self.ip_addresses[0] if self.ip_addresses else ""


def interface_statuses(vmi: VMI, learned: Iterable[GuestAddress]) -> tuple[InterfaceStatus, ...]:
    by_mac: dict[str, list[str]] = {}
    for item in learned:
        known = by_mac.setdefault(item.mac.lower(), [])
        known.extend(address for address in item.addresses if address not in known)
    return tuple(
        InterfaceStatus(nic.name, nic.mac, tuple(sorted(by_mac.get(nic.mac, ()), key=_ipv4_first)))
        for nic in vmi.interfaces
    )


def missing_address(statuses: Sequence[InterfaceStatus]) -> bool:
    return any(not status.ip_addresses for status in statuses)


def interfaces_to_json(statuses: Sequence[InterfaceStatus]) -> list[dict[str, Any]]:
    return [
        {"name": s.name, "mac": s.mac, "ipAddress": s.ip_address, "ipAddresses": list(s.ip_addresses)} for s in statuses
    ]


def interfaces_from_json(items: Any) -> tuple[InterfaceStatus, ...]:
    """Tolerant: entries that are not ours (another writer, an older format) are skipped."""
    found = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            addresses = item.get("ipAddresses") or []
            found.append(
                InterfaceStatus(str(item["name"]), str(item.get("mac") or ""), tuple(str(a) for a in addresses))
            )
    return tuple(found)


def _ipv4_first(address: str) -> tuple[bool, str]:
    return (":" in address, address)
