"""The libvirt side of the agent: intention-revealing operations on domains.

Every operation is idempotent where its goal may already hold (starting a running
domain, destroying a stopped one, undefining a missing one), decided by error code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import libvirt
from lxml import etree

from handler.core.bdf import Bdf
from handler.core.domain_identity import METADATA_NS, read_identity, read_identity_element
from handler.core.domain_state import ObservedDomain, Power, StopCause
from handler.core.interface_status import GuestAddress
from handler.virt.connection import Connection
from handler.virt.domain_events import DomainEvent
from handler.virt.errors import ErrorKind, VirtError, classify, wrap
from handler.virt.guest_network import interface_addresses
from handler.virt.known_domains import OwnDomains, RecentHandles

T = TypeVar("T")

_POWER = {
    libvirt.VIR_DOMAIN_RUNNING: Power.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: Power.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: Power.PAUSED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: Power.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: Power.SHUTTING_DOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: Power.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: Power.CRASHED,
}
_STOP_CAUSE = {
    libvirt.VIR_DOMAIN_SHUTOFF_UNKNOWN: StopCause.NEVER_STARTED,
    libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN: StopCause.GUEST_POWEROFF,
    libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED: StopCause.DESTROYED,
    libvirt.VIR_DOMAIN_SHUTOFF_CRASHED: StopCause.CRASHED,
    libvirt.VIR_DOMAIN_SHUTOFF_FAILED: StopCause.FAILED,
}


class LibvirtHypervisor:
    def __init__(
        self,
        uri: str,
        on_event: Callable[[DomainEvent], None] = lambda _event: None,
        on_reopen: Callable[[], None] = lambda: None,
    ) -> None:
        # The handle each define returns, for the start that follows it in the same pass: over
        # libvirtd's socket a look-up by name is one more round trip per new guest.
        self._defined = RecentHandles()
        self._ours = OwnDomains()

        def reopened() -> None:
            self._defined.clear()  # a handle keeps its (dead) connection open, and its callbacks
            on_reopen()

        self.connection = Connection(uri, on_event, reopened)

    @property
    def uri(self) -> str:
        return self.connection.uri

    def connect(self) -> None:
        self.connection.get()

    def version(self) -> str:
        number = self._call("version", lambda conn: conn.getLibVersion())
        return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"

    def define(self, xml: str) -> None:
        dom = self._call("define", lambda conn: conn.defineXML(xml))
        self._defined.put(dom.name(), dom)
        self._ours.add(None, dom.UUIDString())  # the agent defines only its own domains

    def start(self, name: str) -> None:
        def create(dom: libvirt.virDomain) -> None:
            try:
                dom.create()
            except libvirt.libvirtError as error:
                # Not every driver reports "already running" as OPERATION_INVALID; asked only
                # after a failure, so a normal start is one call.
                if classify(error) is ErrorKind.CONNECTION or not dom.isActive():
                    raise

        self._on_domain(name, "start", create, ok=(ErrorKind.WRONG_STATE,), handle=self._defined.take(name))

    def request_shutdown(self, name: str) -> None:
        """Press the ACPI power button; never the default method, which may block on a guest agent."""

        def press(dom: libvirt.virDomain) -> None:
            try:
                dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
            except libvirt.libvirtError as error:
                if error.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                    raise
                dom.shutdown()  # drivers without ACPI (libvirt's test driver) just power off

        self._on_domain(name, "shutdown", press, ok=(ErrorKind.WRONG_STATE, ErrorKind.NO_DOMAIN))

    def destroy(self, name: str) -> None:
        """Graceful destroy (SIGTERM to QEMU) first; forced if QEMU does not go."""

        def pull(dom: libvirt.virDomain) -> None:
            try:
                dom.destroyFlags(libvirt.VIR_DOMAIN_DESTROY_GRACEFUL)
            except libvirt.libvirtError as error:
                if error.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
                    return
                dom.destroyFlags(libvirt.VIR_DOMAIN_DESTROY_DEFAULT)

        try:
            with self.connection.spare() as conn:  # never queued behind other guests' destroys
                pull(conn.lookupByName(name))
        except libvirt.libvirtError as error:
            wrapped = wrap(error, f"destroy {name}")
            if wrapped.kind not in (ErrorKind.WRONG_STATE, ErrorKind.NO_DOMAIN):
                raise wrapped from None

    def undefine(self, name: str) -> None:
        self._defined.take(name)

        def forget(dom: libvirt.virDomain) -> None:
            dom.undefine()
            self._ours.discard(dom.UUIDString())  # whoever defines that UUID next is read again

        self._on_domain(name, "undefine", forget, ok=(ErrorKind.NO_DOMAIN,))

    def observe(self, name: str) -> ObservedDomain | None:
        conn = self.connection.get()
        try:
            return _observe(conn.lookupByName(name))
        except libvirt.libvirtError as error:
            return _none_if_missing(self.connection.failed(conn, error, f"look up {name}"))

    def observe_alone(self, name: str) -> ObservedDomain | None:
        """As observe(), on a spare connection. A destroy holds its domain's lock in libvirtd until
        QEMU is reaped (~2 s here), and every call that touches that domain (a look-up, a listing)
        waits for it; libvirtd serves five calls of one connection at once. A check at a grace
        deadline on the shared connection could queue behind five such calls."""
        try:
            with self.connection.spare() as conn:
                return _observe(conn.lookupByName(name))
        except libvirt.libvirtError as error:
            return _none_if_missing(wrap(error, f"look up {name}"))

    def list_managed(self) -> list[ObservedDomain]:
        """Every domain carrying our metadata, active or not."""
        domains = self._call("list domains", lambda conn: conn.listAllDomains(0))
        found = []
        for dom in domains:
            try:
                observed = _observe(dom)
            except libvirt.libvirtError:
                continue  # vanished between list and look
            if observed.identity is not None:
                found.append(observed)
        return found

    def foreign_devices(self, owner: str) -> dict[Bdf, str]:
        """PCI hostdevs of every domain that does not carry our metadata: BDF -> domain name.

        Our own domains are tracked through their metadata instead. Their XML is not read again
        once they are known to be ours (defined here, or read before): with 1,000 guests, reading
        every XML over libvirtd's socket takes about half a second, and VMIs with devices wait
        for the answer.
        """
        domains = self._call("list domains", lambda conn: conn.listAllDomains(0))
        by_uuid = {dom.UUIDString(): dom for dom in domains}  # kept by each handle: no call to libvirt
        ours = self._ours.keep_only(owner, set(by_uuid))
        owners: dict[Bdf, str] = {}
        for uuid, dom in by_uuid.items():
            if uuid in ours:
                continue
            try:
                xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
                name = dom.name()
            except libvirt.libvirtError:
                continue
            identity = read_identity(xml)
            if identity is not None and identity.owned_by(owner):
                self._ours.add(owner, uuid)
                continue
            for bdf in _hostdev_addresses(xml):
                owners[bdf] = name
        return owners

    def interface_addresses(self, name: str) -> tuple[GuestAddress, ...]:
        """The running guest's NIC addresses; () when libvirt cannot say (never raises)."""
        try:
            conn = self.connection.get()
        except VirtError:
            return ()
        return interface_addresses(conn, name)

    def _on_domain(
        self,
        name: str,
        operation: str,
        apply: Callable[[libvirt.virDomain], object],
        ok: tuple[ErrorKind, ...],
        handle: libvirt.virDomain | None = None,
    ) -> None:
        """``apply`` to the domain: through ``handle`` if it came from the live connection, else looked up."""
        conn = self.connection.get()
        try:
            apply(handle if handle is not None and handle.connect() is conn else conn.lookupByName(name))
        except libvirt.libvirtError as error:
            wrapped = self.connection.failed(conn, error, f"{operation} {name}")
            if wrapped.kind not in ok:
                raise wrapped from None

    def _call(self, operation: str, apply: Callable[[libvirt.virConnect], T]) -> T:
        """``apply`` on the shared connection; a connection-class failure drops it for a reconnect."""
        conn = self.connection.get()
        try:
            return apply(conn)
        except libvirt.libvirtError as error:
            raise self.connection.failed(conn, error, operation) from None


def _none_if_missing(wrapped: VirtError) -> ObservedDomain | None:
    """A look-up's failure: None when the domain does not exist, else raised."""
    if wrapped.kind is ErrorKind.NO_DOMAIN:
        return None
    raise wrapped from None


def _observe(dom: libvirt.virDomain) -> ObservedDomain:
    state, reason = dom.state()
    power = _POWER.get(state, Power.OTHER)
    cause = _STOP_CAUSE.get(reason, StopCause.OTHER) if power is Power.SHUTOFF else None
    if power is Power.CRASHED:
        cause = StopCause.CRASHED
    try:
        identity = read_identity_element(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS))
    except libvirt.libvirtError as error:
        if error.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            raise
        identity = None
    return ObservedDomain(dom.name(), dom.UUIDString(), power, cause, identity)


def _hostdev_addresses(xml: str) -> list[Bdf]:
    root = etree.fromstring(xml.encode())
    found = []
    for address in root.iterfind("devices/hostdev[@type='pci']/source/address"):
        try:
            found.append(Bdf(*(int(address.get(part, "0"), 16) for part in ("domain", "bus", "slot", "function"))))
        except ValueError:
            continue
    return found


__all__ = ["LibvirtHypervisor", "VirtError"]
