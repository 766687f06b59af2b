"""The agent's ports: what the reconciler needs from the world, as Protocols.

Production wires libvirt, the manifest directory or the Kubernetes API behind these;
tests inject fakes through the same constructor arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from handler.core.actions import RecordEvent
from handler.core.attachments import Attachment
from handler.core.bdf import Bdf
from handler.core.desired import Desired
from handler.core.device_env import AssignedDevice
from handler.core.domain_state import ObservedDomain
from handler.core.interface_status import GuestAddress
from handler.core.refusal import Refusal
from handler.core.status import VMIStatus
from handler.core.vmi import VMI
from handler.host.guest_files import Preparation


class Hypervisor(Protocol):
    def define(self, xml: str) -> None: ...
    def start(self, name: str) -> None: ...
    def request_shutdown(self, name: str) -> None: ...
    def destroy(self, name: str) -> None: ...
    def undefine(self, name: str) -> None: ...
    def observe(self, name: str) -> ObservedDomain | None: ...
    def observe_alone(self, name: str) -> ObservedDomain | None:
        """As observe(), never queued behind other calls (the check at a grace deadline)."""
        ...

    def list_managed(self) -> list[ObservedDomain]: ...
    def foreign_devices(self, owner: str) -> dict[Bdf, str]:
        """Hostdevs of every domain not managed by agent ``owner``: BDF -> domain name."""
        ...


class DesiredSource(Protocol):
    def desired(self, key: str) -> Desired | None:
        """What is wanted for ``key``; None when the source no longer knows the VMI."""
        ...

    def keys(self) -> Iterable[str]: ...

    def knows(self, key: str) -> bool:
        """Whether ``key`` is one of the source's VMIs: cheap, unlike ``desired``."""
        ...


class StatusSink(Protocol):
    def claim(self, key: str) -> None:
        """Take ownership of the VMI before its domain is created (Kubernetes: the finalizer)."""
        ...

    def last_status(self, key: str) -> VMIStatus | None: ...
    def write(self, key: str, status: VMIStatus) -> None: ...
    def record_event(self, key: str, event: RecordEvent) -> None: ...
    def forget(self, key: str) -> None: ...


class DeviceAllocator(Protocol):
    """Picks VFs for VMIs that bring none (bare metal without an env file), durably."""

    def allocate(self, vmi: VMI, taken_elsewhere: Callable[[Bdf], bool]) -> tuple[AssignedDevice, ...]:
        """The VMI's VFs (the same ones on every call until released); raises Refused if none are free."""
        ...

    def release(self, key: str) -> None: ...


class NetworkResolver(Protocol):
    """Where this node plugs each NIC of a VMI in (libvirt network or host bridge)."""

    def attachments(self, vmi: VMI) -> tuple[Attachment, ...]:
        """One Attachment per interface, in order; raises Refused naming the network that cannot be given."""
        ...


class AddressProbe(Protocol):
    def interface_addresses(self, name: str) -> tuple[GuestAddress, ...]:
        """What libvirt knows of the running domain's NIC addresses (leases, guest agent)."""
        ...


class DeviceInspector(Protocol):
    """Host-side checks that a PCI function may be passed through (sysfs under the host root)."""

    def check(self, bdf: Bdf, resource: str | None) -> Refusal | None:
        """A Refusal if the device must not be used, else None."""
        ...


class GuestFilePreparer(Protocol):
    """Makes the files a guest's disks need (cloud-init ISOs, overlays, empty disks)."""

    def prepare(self, vmi: VMI) -> Preparation:
        """Called before a domain is defined or started; a refusal keeps it from starting."""
        ...

    def remove(self, uid: str) -> None:
        """Called after the VMI's domain is undefined."""
        ...

    def sweep(self, keep: set[str]) -> None:
        """At start: remove the files of every VMI uid not in ``keep`` (the uids of existing domains)."""
        ...

    def close(self) -> None:
        """The agent is stopping: end any background work."""
        ...
