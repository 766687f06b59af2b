"""Where each guest NIC is plugged in on the host: a libvirt network or a host bridge.

The VMI names networks the Kubernetes way (pod, multus); the node decides what they are.
``default_attachments`` is the bare-metal answer without asking the host (pod -> the
``--default-network`` libvirt network, multus X -> libvirt network X); the agent's resolvers
refine it (a multus name that is a host bridge) or refuse it (the pod network in Kubernetes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from handler.core.refusal import Refusal, Refused
from handler.core.vmi import VMI

NETWORK = "network"
BRIDGE = "bridge"


@dataclass(frozen=True, slots=True)
class Attachment:
    interface: str
    """The interface's name in the VMI."""
    kind: str
    """``network`` (a libvirt network) or ``bridge`` (a host bridge)."""
    source: str
    """The libvirt network's or the bridge's name."""


def default_attachments(vmi: VMI, default_network: str) -> tuple[Attachment, ...]:
    attachments = []
    for interface in vmi.interfaces:
        name = default_network if interface.network.kind == "pod" else interface.network.network_name
        attachments.append(Attachment(interface.name, NETWORK, name))
    return tuple(attachments)


def resolve_on_host(
    vmi: VMI,
    default_network: str,
    network_active: Callable[[str], bool | None],
    is_bridge: Callable[[str], bool],
) -> tuple[Attachment, ...]:
    """Bare metal: each name is a libvirt network (``network_active`` says True or False) or, for
    multus, a host bridge; raises Refused naming the field otherwise. ``network_active`` returns
    None when libvirt has no network of that name."""
    attachments = []
    for interface in vmi.interfaces:
        network = interface.network
        name = default_network if network.kind == "pod" else network.network_name
        active = network_active(name)
        if active is True:
            attachments.append(Attachment(interface.name, NETWORK, name))
        elif active is False:
            raise Refused(
                Refusal(
                    "NetworkUnavailable",
                    f"{network.field}",
                    f"is libvirt network {name!r}, which is not active",
                    f"virsh net-start {name} (and net-autostart {name})",
                )
            )
        elif network.kind == "multus" and is_bridge(name):
            attachments.append(Attachment(interface.name, BRIDGE, name))
        elif network.kind == "pod":
            raise Refused(
                Refusal(
                    "NetworkUnavailable",
                    f"{network.field}.pod",
                    f"means libvirt network {name!r}, which does not exist",
                    "define it (virsh net-define), or pick another with --default-network",
                )
            )
        else:
            raise Refused(
                Refusal(
                    "NetworkUnavailable",
                    f"{network.field}.multus.networkName",
                    f"{name!r} is neither a libvirt network nor a host bridge",
                    "create the bridge or libvirt network, or name an existing one",
                )
            )
    return tuple(attachments)
