"""The VMI fields the stack accepts: one table, read by the parser and by the CRD generator.

The parser asks ``known(path)`` for the keys allowed at a place in the manifest, so a field
that is not in this table is refused by name on the node, and the CRD generated from the
same table (``handler.core.crd_schema``) makes the API server refuse it at ``kubectl apply``.
A field that the stack refuses is left out on purpose.

Paths are dotted, with ``[]`` stepping into a list's items: ``spec.domain.devices.disks[].disk``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache


@dataclass(frozen=True, slots=True)
class Node:
    """One place in the schema. ``kind`` is an OpenAPI type, or one of:
    ``quantity`` (int-or-string), ``map`` (string keys to ``items``), ``free`` (kept as written,
    for scheduling fields that only the scheduler reads)."""

    kind: str
    children: Mapping[str, Node] = field(default_factory=dict)
    items: Node | None = None
    required: tuple[str, ...] = ()
    description: str = ""
    enum: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None


def obj(children: Mapping[str, Node], *, required: tuple[str, ...] = (), description: str = "") -> Node:
    return Node("object", children=dict(children), required=required, description=description)


def arr(items: Node, description: str = "") -> Node:
    return Node("array", items=items, description=description)


def text(description: str = "", enum: tuple[str, ...] = ()) -> Node:
    return Node("string", description=description, enum=enum)


def whole(description: str = "", *, minimum: int | None = None, maximum: int | None = None) -> Node:
    return Node("integer", description=description, minimum=minimum, maximum=maximum)


def flag(description: str = "") -> Node:
    return Node("boolean", description=description)


def quantity(description: str = "") -> Node:
    return Node("quantity", description=description)


def mapping_of(items: Node, description: str = "") -> Node:
    return Node("map", items=items, description=description)


def free(description: str = "") -> Node:
    return Node("free", description=description)


MAX_GRACE_SECONDS = 86400
MAX_MEMORY_BYTES = 2**50
"""1 PiB: far above any host, and far below what libvirt can no longer parse (KiB in 64 bits)."""

_DEVICE_ENTRY = obj(
    {
        "name": text("Unique name of this device in the VMI; the domain alias is ua-qat-<name>."),
        "deviceName": text("Device plugin resource, e.g. qat.intel.com/generic."),
        "tag": text("Free-form tag, kept for KubeVirt compatibility."),
    },
    required=("name", "deviceName"),
)

_DISK = obj(
    {
        "name": text("Name of the volume this disk shows."),
        "disk": obj(
            {
                "bus": text("Disk bus.", enum=("virtio", "sata")),
                "readonly": flag(),
            }
        ),
        "cdrom": obj(
            {
                "bus": text("CD-ROM bus (default sata).", enum=("sata",)),
                "readonly": flag("Always true for a cdrom."),
            }
        ),
        "serial": text(),
        "bootOrder": whole(minimum=1, maximum=1000),
    },
    required=("name",),
)

_SECRET_REF = obj({"name": text("Secret in the VMI's namespace (Kubernetes only).")}, required=("name",))

_CLOUD_INIT = obj(
    {
        "userData": text("Inline user data, at most 2048 bytes."),
        "userDataBase64": text("Inline user data in base64, at most 2048 bytes as written."),
        "secretRef": _SECRET_REF,
        "networkData": text("Inline network config, at most 2048 bytes."),
        "networkDataBase64": text("Inline network config in base64, at most 2048 bytes as written."),
        "networkDataSecretRef": _SECRET_REF,
    }
)

_VOLUME = obj(
    {
        "name": text(),
        "hostDisk": obj(
            {
                "path": text("Absolute path of a raw image on the host."),
                "type": text(
                    "DiskOrCreate makes a sparse raw image when the path is missing.", enum=("Disk", "DiskOrCreate")
                ),
                "capacity": quantity("Size of a DiskOrCreate image."),
                "shared": flag(),
            },
            required=("path",),
        ),
        "emptyDisk": obj(
            {"capacity": quantity("Size of the sparse scratch disk, thrown away with the VMI.")},
            required=("capacity",),
        ),
        "containerDisk": obj(
            {
                "image": text("OCI image with the disk under /disk; or oci:/layout[:name], oci-archive:/file[:name]."),
                "path": text("Path of the disk inside the image (default: the one file under /disk)."),
                "imagePullPolicy": text(enum=("Always", "IfNotPresent", "Never")),
            },
            required=("image",),
        ),
        "cloudInitNoCloud": _CLOUD_INIT,
        "cloudInitConfigDrive": _CLOUD_INIT,
    },
    required=("name",),
)

_INTERFACE = obj(
    {
        "name": text("Name of the spec.networks entry this NIC is plugged into."),
        "bridge": obj({}, description="Bridge binding: the NIC joins the network's bridge."),
        "masquerade": obj({}, description="NAT binding; pod network only (libvirt's NAT network)."),
        "macAddress": text("Unicast MAC; derived from the VMI uid and interface name when left out."),
        "model": text("NIC model.", enum=("virtio", "e1000e")),
        "pciAddress": text("Guest PCI address, e.g. 0000:81:01.0."),
    },
    required=("name",),
)

_NETWORK = obj(
    {
        "name": text(),
        "pod": obj({}, description="Bare metal: the --default-network libvirt network. Refused in Kubernetes."),
        "multus": obj(
            {
                "networkName": text("NetworkAttachmentDefinition (bare metal: libvirt network or host bridge)."),
                "default": flag(),
            },
            required=("networkName",),
        ),
    },
    required=("name",),
)

_DOMAIN = obj(
    {
        "cpu": obj(
            {
                "cores": whole(minimum=1, maximum=512),
                "sockets": whole(minimum=1, maximum=1),
                "threads": whole(minimum=1, maximum=1),
            }
        ),
        "memory": obj({"guest": quantity("Guest memory, e.g. 1Gi.")}),
        "resources": obj(
            {
                "requests": mapping_of(quantity()),
                "limits": mapping_of(quantity()),
                "overcommitGuestOverhead": flag(),
            }
        ),
        "devices": obj(
            {
                "qats": arr(_DEVICE_ENTRY, "QAT virtual functions for the guest (v1.QAT)."),
                "hostDevices": arr(_DEVICE_ENTRY, "Generic PCI host devices, KubeVirt's v1.HostDevice."),
                "disks": arr(_DISK),
                "interfaces": arr(_INTERFACE, "Guest NICs, each plugged into the spec.networks entry of its name."),
                "rng": obj({}, description="A virtio-rng fed from the host's /dev/urandom."),
                "autoattachPodInterface": flag(),
                "autoattachGraphicsDevice": flag(),
                "autoattachSerialConsole": flag(),
                "autoattachMemBalloon": flag(),
            }
        ),
        "firmware": obj(
            {
                "kernelBoot": obj(
                    {
                        "kernelArgs": text(),
                        "container": obj(
                            {
                                "kernelPath": text(),
                                "initrdPath": text(),
                                "image": text(),
                                "imagePullPolicy": text(),
                                "imagePullSecret": text(),
                            }
                        ),
                    }
                )
            }
        ),
        "machine": obj({"type": text()}),
        "features": obj({"acpi": obj({"enabled": flag()})}),
    }
)

SPEC = obj(
    {
        "domain": _DOMAIN,
        "volumes": arr(_VOLUME),
        "networks": arr(_NETWORK),
        "terminationGracePeriodSeconds": whole(minimum=0, maximum=MAX_GRACE_SECONDS),
        "nodeSelector": mapping_of(text()),
        "affinity": free(),
        "tolerations": arr(free()),
        "schedulerName": text(),
        "priorityClassName": text(),
        "evictionStrategy": text(),
        "topologySpreadConstraints": arr(free()),
    },
    required=("domain",),
)


def node_at(path: str) -> Node:
    """The node at a dotted path below the manifest root, e.g. ``spec.domain.devices.disks[]``."""
    if path == "spec":
        return SPEC
    if not path.startswith("spec."):
        raise KeyError(path)
    node = SPEC
    for part in path[len("spec.") :].split("."):
        name, brackets = part.rstrip("[]"), (len(part) - len(part.rstrip("[]"))) // 2
        node = node.children[name]
        for _ in range(brackets):
            if node.items is None:
                raise KeyError(path)
            node = node.items
    return node


@cache
def known(path: str) -> frozenset[str]:
    """The keys the stack accepts in the object at ``path`` (list indexes written as ``[]``)."""
    return frozenset(node_at(path).children)


def leaf_paths(node: Node = SPEC, prefix: str = "spec") -> list[str]:
    """Every path in the table, objects included, for tests that walk the whole schema."""
    paths = [prefix]
    for name, child in node.children.items():
        paths.extend(leaf_paths(child, f"{prefix}.{name}"))
    if node.items is not None:
        paths.extend(leaf_paths(node.items, f"{prefix}[]"))
    return paths
