"""The part of a kubevirt.io/v1 VirtualMachineInstance that the agent acts on."""

from __future__ import annotations

from dataclasses import dataclass

from handler.core.disk_sources import DiskSource
from handler.core.vmi_networks import Interface

NODE_LABEL = "kubevirt.io/nodeName"


@dataclass(frozen=True, slots=True)
class DeviceRequest:
    """One entry of ``spec.domain.devices.qats`` or ``.hostDevices``: a device for the guest."""

    name: str
    resource: str
    """The device plugin resource, KubeVirt's ``deviceName`` (e.g. ``qat.intel.com/generic``)."""
    field: str
    """Where it came from, for error messages (``spec.domain.devices.qats[0]``)."""


@dataclass(frozen=True, slots=True)
class KernelBoot:
    kernel: str
    initrd: str | None
    cmdline: str


@dataclass(frozen=True, slots=True)
class HostDisk:
    name: str
    path: str
    bus: str
    readonly: bool
    serial: str | None = None
    boot_order: int | None = None
    shared: bool = False
    """hostDisk.shared: the image may be attached to several guests at once (libvirt <shareable/>)."""
    device: str = "disk"
    """``disk`` or ``cdrom``: which of KubeVirt's disk entry kinds the VMI used."""
    source: DiskSource | None = None
    """None for a plain hostDisk; otherwise what the agent prepares. When the agent makes the
    file, ``path`` is its name inside the VMI's directory (see handler/core/disk_sources.py)."""


@dataclass(frozen=True, slots=True)
class VMI:
    namespace: str
    name: str
    uid: str
    generation: int
    labels: tuple[tuple[str, str], ...]
    deletion_requested: bool
    cores: int
    memory_bytes: int
    devices: tuple[DeviceRequest, ...]
    kernel_boot: KernelBoot | None
    disks: tuple[HostDisk, ...]
    grace_seconds: int
    spec_digest: str
    """A digest of the spec as written, so a changed manifest can be told from an unchanged one."""
    interfaces: tuple[Interface, ...] = ()
    rng: bool = False
    """``spec.domain.devices.rng: {}``: a virtio-rng backed by the host's /dev/urandom."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def domain_name(self) -> str:
        return domain_name_for(self.key)

    @property
    def node_name(self) -> str | None:
        return dict(self.labels).get(NODE_LABEL)

    def resources(self) -> tuple[str, ...]:
        """The distinct resource names asked for, in first-seen order."""
        return tuple(dict.fromkeys(request.resource for request in self.devices))


def domain_name_for(key: str) -> str:
    """``namespace/name`` -> ``namespace_name``. Namespaces are DNS labels and cannot contain '_',
    so ``key_of_domain`` splits it back unambiguously."""
    namespace, _, name = key.partition("/")
    return f"{namespace}_{name}"


def key_of_domain(domain_name: str) -> str:
    namespace, _, name = domain_name.partition("_")
    return f"{namespace}/{name}"
