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

from handler.virt.errors import VirtError
from handler.virt.hypervisor import LibvirtHypervisor, _RecentHandles

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
    handles = _RecentHandles()
    for number in range(_RecentHandles.KEPT + 10):
        handles.put(f"d{number}", number)
    assert handles.take("d0") is None  # the oldest went first
    assert handles.take(f"d{_RecentHandles.KEPT + 9}") == _RecentHandles.KEPT + 9
    assert handles.take(f"d{_RecentHandles.KEPT + 9}") is None
