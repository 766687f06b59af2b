"""How many libvirt calls a new guest costs: over libvirtd's socket each is a round trip.

A define hands its domain to the start that follows, and a start is one ``create`` unless it
fails. Run on libvirt's test driver, with the Python binding's methods counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import libvirt
import pytest
from lxml import etree

from handler.core.domain_identity import DomainIdentity, identity_element
from handler.virt.errors import VirtError
from handler.virt.hypervisor import LibvirtHypervisor
from handler.virt.known_domains import RecentHandles

XML = """<domain type='test'><name>{name}</name><memory>65536</memory>
<os><type>hvm</type></os></domain>"""


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    counted: Counter[str] = Counter()
    for cls, method in [(libvirt.virConnect, "lookupByName"), (libvirt.virDomain, "isActive")]:
        original = getattr(cls, method)

        def counting(self: Any, *args: Any, _original: Any = original, _name: str = method) -> Any:
            counted[_name] += 1
            return _original(self, *args)

        monkeypatch.setattr(cls, method, counting)
    return counted


@pytest.fixture
def hypervisor() -> Iterator[LibvirtHypervisor]:
    keeper = libvirt.open("test:///default")  # holds the test driver's state across reconnects
    hv = LibvirtHypervisor("test:///default")
    yield hv
    hv.connection.close()
    for dom in keeper.listAllDomains(0):
        if dom.name().startswith("calls-"):
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    keeper.close()


def test_a_defined_domain_is_started_without_a_look_up(hypervisor: LibvirtHypervisor, calls: Counter[str]) -> None:
    hypervisor.define(XML.format(name="calls-new"))
    hypervisor.start("calls-new")
    observed = hypervisor.observe("calls-new")
    assert observed is not None and observed.power.name == "RUNNING"
    assert calls == Counter({"lookupByName": 1})  # the observe's only


def test_a_second_start_looks_up_and_tolerates_a_running_domain(
    hypervisor: LibvirtHypervisor, calls: Counter[str]
) -> None:
    hypervisor.define(XML.format(name="calls-twice"))
    hypervisor.start("calls-twice")
    hypervisor.start("calls-twice")  # the handle was taken once; this one looks the domain up
    assert calls["lookupByName"] == 1


def test_a_handle_from_a_dropped_connection_is_not_used(hypervisor: LibvirtHypervisor, calls: Counter[str]) -> None:
    hypervisor.define(XML.format(name="calls-reopen"))
    hypervisor.connection.drop(hypervisor.connection.get())
    hypervisor.start("calls-reopen")
    assert calls["lookupByName"] == 1
    observed = hypervisor.observe("calls-reopen")
    assert observed is not None and observed.power.name == "RUNNING"


class _Refusing:
    """A domain whose create fails with a code that does not say "already running"."""

    def __init__(self, active: bool) -> None:
        self.active = active

    def create(self) -> int:
        error = libvirt.libvirtError("internal error: cannot start")
        error.err = (libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_QEMU, "cannot start", 2, None, None, None, 0, 0)
        raise error

    def isActive(self) -> int:
        return 1 if self.active else 0


@pytest.mark.parametrize("active", [True, False])
def test_a_failed_create_is_forgiven_only_if_the_domain_runs(
    hypervisor: LibvirtHypervisor, monkeypatch: pytest.MonkeyPatch, active: bool
) -> None:
    monkeypatch.setattr(libvirt.virConnect, "lookupByName", lambda _conn, _name: _Refusing(active))
    if active:
        hypervisor.start("calls-any")
    else:
        with pytest.raises(VirtError, match="cannot start"):
            hypervisor.start("calls-any")


def test_recent_handles_are_taken_once_and_bounded() -> None:
    handles = RecentHandles()
    for number in range(RecentHandles.KEPT + 10):
        handles.put(f"d{number}", number)
    assert handles.take("d0") is None  # the oldest went first
    assert handles.take(f"d{RecentHandles.KEPT + 9}") == RecentHandles.KEPT + 9
    assert handles.take(f"d{RecentHandles.KEPT + 9}") is None


HOSTDEV_XML = """<domain type='test'><name>{name}</name><memory>65536</memory><os><type>hvm</type></os>
{metadata}<devices><hostdev mode='subsystem' type='pci' managed='no'><source>
<address domain='0x0000' bus='0x{bus:02x}' slot='0x01' function='0x0'/></source></hostdev></devices></domain>"""


def ours(name: str) -> str:
    identity = DomainIdentity("ns", name, f"uid-{name}", 1, "digest", 30, (), owner="me")
    return f"<metadata>{etree.tostring(identity_element(identity)).decode()}</metadata>"


@pytest.fixture
def xml_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    read: list[str] = []
    original = libvirt.virDomain.XMLDesc

    def counting(self: libvirt.virDomain, flags: int = 0) -> str:
        read.append(self.name())
        return str(original(self, flags))

    monkeypatch.setattr(libvirt.virDomain, "XMLDesc", counting)
    return read


def test_own_domains_xml_is_read_once_foreign_ones_every_time(
    hypervisor: LibvirtHypervisor, xml_reads: list[str]
) -> None:
    keeper = libvirt.open("test:///default")
    keeper.defineXML(HOSTDEV_XML.format(name="calls-adopted", metadata=ours("a"), bus=0x31))
    keeper.defineXML(HOSTDEV_XML.format(name="calls-foreign", metadata="", bus=0x32))
    hypervisor.define(HOSTDEV_XML.format(name="calls-mine", metadata=ours("m"), bus=0x33))

    first = hypervisor.foreign_devices("me")
    assert {str(bdf): name for bdf, name in first.items()} == {"0000:32:01.0": "calls-foreign"}
    assert "calls-mine" not in xml_reads  # defined here: known to be ours
    assert "calls-adopted" in xml_reads  # ours too, but only its metadata could say so

    xml_reads.clear()
    keeper.defineXML(HOSTDEV_XML.format(name="calls-late", metadata="", bus=0x34))
    second = hypervisor.foreign_devices("me")
    assert {str(bdf) for bdf in second} == {"0000:32:01.0", "0000:34:01.0"}
    assert sorted(name for name in xml_reads if name.startswith("calls-")) == ["calls-foreign", "calls-late"]

    xml_reads.clear()
    third = hypervisor.foreign_devices("someone-else")  # another owner: nothing is taken as known
    assert {"calls-adopted", "calls-mine"} <= set(xml_reads)
    assert {str(bdf) for bdf in third} >= {"0000:31:01.0", "0000:33:01.0"}
    keeper.close()


def test_a_domain_undefined_and_defined_again_by_someone_else_is_read_again(
    hypervisor: LibvirtHypervisor, xml_reads: list[str]
) -> None:
    uuid = "<uuid>5d1e4b1c-0b8a-4f7e-9a51-3c2d7e6f8a90</uuid>"
    mine = HOSTDEV_XML.format(name="calls-reused", metadata=ours("r"), bus=0x35)
    hypervisor.define(mine.replace("</name>", f"</name>{uuid}"))
    assert "calls-reused" not in hypervisor.foreign_devices("me").values()
    hypervisor.undefine("calls-reused")  # and at once defined again by someone else, same UUID
    keeper = libvirt.open("test:///default")
    theirs = HOSTDEV_XML.format(name="calls-reused", metadata="", bus=0x35)
    keeper.defineXML(theirs.replace("</name>", f"</name>{uuid}"))
    found = hypervisor.foreign_devices("me")
    assert {str(bdf): name for bdf, name in found.items()}.get("0000:35:01.0") == "calls-reused"
    keeper.close()


def test_a_reopened_connection_lets_go_of_the_handles_of_the_old_one() -> None:
    """A handle keeps its connection open (and its event callbacks registered) after a drop."""
    keeper = libvirt.open("test:///default")
    reopened: list[bool] = []
    hv = LibvirtHypervisor("test:///default", on_reopen=lambda: reopened.append(True))
    try:
        hv.define(XML.format(name="calls-held"))
        hv.connection.drop(hv.connection.get())
        hv.connect()
        assert reopened == [True]
        assert hv._defined.take("calls-held") is None
    finally:
        hv.connection.close()
        keeper.lookupByName("calls-held").undefine()
        keeper.close()


def test_the_check_at_a_grace_deadline_never_waits_on_the_shared_connection(hypervisor: LibvirtHypervisor) -> None:
    """observe_alone() answers on a spare connection: libvirtd serves five calls of one connection at
    once, and calls touching a domain that is being destroyed wait for its QEMU to be reaped."""
    hypervisor.define(XML.format(name="calls-deadline"))
    hypervisor.start("calls-deadline")
    hypervisor.connection.close()  # from here on, any use of the shared connection would reopen it
    seen = hypervisor.observe_alone("calls-deadline")
    assert seen is not None and seen.active and seen.name == "calls-deadline"
    assert hypervisor.observe_alone("calls-missing") is None
    assert not hypervisor.connection.connected, "the shared connection was used"
