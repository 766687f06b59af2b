"""Kubernetes networking for a VMI's NICs: what this architecture can honestly give.

QEMU runs under the node's libvirtd, not inside the launcher pod's network namespace, so
the pod network (the pod's own interface and IP) cannot reach the guest: it is refused
with a pointer to the supported way. A Multus network whose NetworkAttachmentDefinition
is a bridge CNI config plugs the NIC into that host bridge (bridge binding), the bridge
that bridge-CNI pods on the node share.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from handler.core.attachments import BRIDGE, Attachment
from handler.core.refusal import Refusal, Refused
from handler.core.vmi_networks import Interface

DEFAULT_CNI_BRIDGE = "cni0"
"""The bridge CNI plugin's own default when its config names none."""


def pod_network_refusal(interface: Interface) -> Refused:
    return Refused(
        Refusal(
            "NetworkUnsupported",
            f"{interface.network.field}.pod",
            "cannot be given in Kubernetes: the guest runs under the node's libvirtd, outside the pod's network",
            "use a multus network whose NetworkAttachmentDefinition is a bridge CNI config (type: bridge)",
        )
    )


def nad_reference(interface: Interface, namespace: str) -> tuple[str, str]:
    """Multus ``networkName`` is ``name`` (in the VMI's namespace) or ``namespace/name``."""
    space, _, name = interface.network.network_name.rpartition("/")
    return space or namespace, name


def bridge_attachment(interface: Interface, nad: Mapping[str, Any] | None, where: str) -> Attachment:
    subject = f"{interface.network.field}.multus.networkName"
    if nad is None:
        raise Refused(
            Refusal(
                "NetworkUnavailable",
                subject,
                f"names NetworkAttachmentDefinition {where}, which does not exist",
                "create it, or name an existing one",
            )
        )
    config = _config(nad, subject, where)
    listed = config.get("plugins")
    plugins: list[Any] = listed if isinstance(listed, list) else [config]
    for plugin in plugins:
        if isinstance(plugin, Mapping) and plugin.get("type") == "bridge":
            bridge = plugin.get("bridge") or DEFAULT_CNI_BRIDGE
            return Attachment(interface.name, BRIDGE, str(bridge))
    kinds = ", ".join(str(p.get("type")) for p in plugins if isinstance(p, Mapping)) or "none"
    raise Refused(
        Refusal(
            "NetworkUnsupported",
            subject,
            f"names {where}, a CNI config of type {kinds}, not bridge",
            "use a NetworkAttachmentDefinition whose config is type: bridge",
        )
    )


def missing_bridge_refusal(interface: Interface, attachment: Attachment, where: str) -> Refused:
    return Refused(
        Refusal(
            "NetworkUnavailable",
            f"{interface.network.field}.multus.networkName",
            f"names {where}, whose bridge {attachment.source!r} does not exist on this node",
            "create the bridge on every node that runs such VMIs (or fix the bridge name in its config)",
        )
    )


def _config(nad: Mapping[str, Any], subject: str, where: str) -> Mapping[str, Any]:
    raw = (nad.get("spec") or {}).get("config") if isinstance(nad.get("spec"), Mapping) else None
    try:
        config = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        config = None
    if not isinstance(config, Mapping):
        raise Refused(
            Refusal(
                "NetworkUnsupported",
                subject,
                f"names {where}, whose spec.config is not a JSON CNI config",
                "give the NetworkAttachmentDefinition a bridge CNI config",
            )
        )
    return config
