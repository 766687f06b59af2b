"""``spec.networks`` joined with ``spec.domain.devices.interfaces``, in KubeVirt's shape.

Each interface names one network; a network is the pod network (``pod: {}``) or a
Multus attachment (``multus: {networkName}``). Where the guest's NIC is plugged in on
the host is decided later, by the node's network resolver (``handler.core.attachments``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handler.core.bdf import Bdf, parse_bdf
from handler.core.fields import invalid, mapping, only_known, sequence, string, unsupported
from handler.core.vmi_schema import known

MODELS = ("virtio", "e1000e")
BINDINGS = ("bridge", "masquerade")
_MAC = re.compile(r"^([0-9a-f]{2})([:-][0-9a-f]{2}){5}$")


@dataclass(frozen=True, slots=True)
class Network:
    name: str
    kind: str
    """``pod`` or ``multus``."""
    network_name: str = ""
    """Multus only: the NetworkAttachmentDefinition (bare metal: libvirt network or host bridge)."""
    field: str = ""
    """Where it came from, for refusals (``spec.networks[0]``)."""


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    network: Network
    binding: str
    model: str
    mac: str
    """Lower-case ``aa:bb:cc:dd:ee:ff``; derived from the VMI uid and the name when not given."""
    pci_address: Bdf | None = None
    field: str = ""


def stable_mac(uid: str, name: str) -> str:
    """A MAC that is the same on every start of this VMI, so DHCP leases survive restarts:
    locally administered (bit 1 set) and unicast (bit 0 clear)."""
    digest = bytearray(hashlib.sha256(f"{uid}/{name}".encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02
    return ":".join(f"{byte:02x}" for byte in digest)


def parse_interfaces(spec: Mapping[str, Any], devices: Mapping[str, Any], uid: str) -> tuple[Interface, ...]:
    networks = _networks(spec)
    interfaces: list[Interface] = []
    macs: dict[str, str] = {}
    for index, entry in enumerate(sequence(devices.get("interfaces"), "spec.domain.devices.interfaces")):
        path = f"spec.domain.devices.interfaces[{index}]"
        item = mapping(entry, path)
        only_known(item, path, known("spec.domain.devices.interfaces[]"), "the agent offers bridge and masquerade")
        name = string(item.get("name"), f"{path}.name")
        if any(other.name == name for other in interfaces):
            raise invalid(f"{path}.name", f"{name!r} is used twice", "give every interface a unique name")
        network = networks.pop(name, None)
        if network is None:
            raise invalid(f"{path}.name", f"{name!r} names no network", "add a spec.networks entry with this name")
        interface = Interface(
            name=name,
            network=network,
            binding=_binding(item, path, network),
            model=_model(item, path),
            mac=_mac(item, path, uid, name),
            pci_address=_pci_address(item, path),
            field=path,
        )
        if interface.mac in macs:
            raise invalid(f"{path}.macAddress", f"{interface.mac} is also used by {macs[interface.mac]}", "use another")
        macs[interface.mac] = path
        interfaces.append(interface)
    if networks:
        orphan = next(iter(networks.values()))
        raise invalid(f"{orphan.field}.name", f"{orphan.name!r} has no interface", "add a matching interfaces entry")
    return tuple(interfaces)


def _networks(spec: Mapping[str, Any]) -> dict[str, Network]:
    found: dict[str, Network] = {}
    for index, entry in enumerate(sequence(spec.get("networks"), "spec.networks")):
        path = f"spec.networks[{index}]"
        item = mapping(entry, path)
        only_known(item, path, known("spec.networks[]"), "use pod or multus")
        name = string(item.get("name"), f"{path}.name")
        if name in found:
            raise invalid(f"{path}.name", f"{name!r} is used twice", "give every network a unique name")
        sources = [key for key in ("pod", "multus") if key in item]
        if len(sources) != 1:
            raise invalid(path, "must have exactly one of pod or multus", "write pod: {} or multus: {networkName: X}")
        if sources == ["pod"]:
            pod = mapping(item["pod"], f"{path}.pod")
            only_known(
                pod, f"{path}.pod", known("spec.networks[].pod"), "the pod network's addresses come from libvirt"
            )
            found[name] = Network(name, "pod", field=path)
            continue
        multus = mapping(item["multus"], f"{path}.multus")
        only_known(multus, f"{path}.multus", known("spec.networks[].multus"))
        if multus.get("default") is True:
            raise unsupported(f"{path}.multus.default", "a Multus network cannot replace the pod network here")
        target = string(multus.get("networkName"), f"{path}.multus.networkName")
        found[name] = Network(name, "multus", target, path)
    return found


def _binding(item: Mapping[str, Any], path: str, network: Network) -> str:
    given = [key for key in BINDINGS if key in item]
    if len(given) > 1:
        raise invalid(path, "has both bridge and masquerade", "keep one binding")
    binding = given[0] if given else "bridge"
    only_known(mapping(item.get(binding), f"{path}.{binding}"), f"{path}.{binding}", ())
    if binding == "masquerade" and network.kind != "pod":
        raise invalid(f"{path}.masquerade", "binds only the pod network", "use bridge: {} for a multus network")
    return binding


def _model(item: Mapping[str, Any], path: str) -> str:
    model = string(item.get("model"), f"{path}.model", required=False) or "virtio"
    if model not in MODELS:
        raise unsupported(f"{path}.model", f"{model!r}; use one of {', '.join(MODELS)}")
    return model


def _mac(item: Mapping[str, Any], path: str, uid: str, name: str) -> str:
    given = string(item.get("macAddress"), f"{path}.macAddress", required=False).lower()
    if not given:
        return stable_mac(uid, name)
    if not _MAC.match(given):
        raise invalid(f"{path}.macAddress", f"{given!r} is not a MAC address", "use the form 02:00:00:00:00:01")
    mac = given.replace("-", ":")
    if int(mac[:2], 16) & 1:
        raise invalid(f"{path}.macAddress", f"{mac} is a multicast address", "clear the lowest bit of the first octet")
    return mac


def _pci_address(item: Mapping[str, Any], path: str) -> Bdf | None:
    text = string(item.get("pciAddress"), f"{path}.pciAddress", required=False)
    if not text:
        return None
    bdf = parse_bdf(text)
    if bdf is None:
        raise invalid(f"{path}.pciAddress", f"{text!r} is not a PCI address", "use the form 0000:81:01.0")
    return bdf
