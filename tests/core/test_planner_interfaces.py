"""The planner and a guest's NICs: status.interfaces from learned addresses, polled until known."""

from __future__ import annotations

from dataclasses import replace

from handler.core.actions import DefineDomain, WriteStatus
from handler.core.attachments import Attachment
from handler.core.desired import Desired, Intent, Observed
from handler.core.domain_state import ObservedDomain, Power
from handler.core.domain_xml import identity_of
from handler.core.interface_status import GuestAddress, InterfaceStatus
from handler.core.planner import PlanSettings, plan
from handler.core.render_settings import RenderSettings
from handler.core.status import VMIStatus
from handler.core.vmi_networks import Interface, Network
from handler.host.domain_templates import load_templates
from tests.core.test_planner import KEY, NAME, NOW, UID, make_vmi

SETTINGS = PlanSettings(
    render=RenderSettings(domain_type="qemu", log_dir="/logs", templates=load_templates()), address_poll_seconds=7.0
)
POD = Network("default", "pod", field="spec.networks[0]")
NIC = Interface("default", POD, "masquerade", "virtio", "02:00:00:00:00:01")
VMI_ = replace(make_vmi(), interfaces=(NIC,))
RUN = Desired(KEY, Intent.RUN, VMI_, (), attachments=(Attachment("default", "bridge", "br0"),))


def running(
    addresses: tuple[GuestAddress, ...], last: VMIStatus | None = None, polls: int = 0
) -> tuple[VMIStatus, float | None]:
    dom = ObservedDomain(NAME, UID, Power.RUNNING, None, identity_of(VMI_, (), SETTINGS.render))
    result = plan(RUN, Observed(dom, last, None, NOW, addresses, polls), SETTINGS)
    writes = [a.status for a in result.actions if isinstance(a, WriteStatus)]
    return (writes[-1] if writes else last), result.requeue_after  # type: ignore[return-value]


def test_first_define_uses_the_resolved_attachment_and_polls_for_an_address() -> None:
    result = plan(RUN, Observed(None, None, None, NOW), SETTINGS)
    (define,) = [a for a in result.actions if isinstance(a, DefineDomain)]
    assert '<source bridge="br0"/>' in define.xml
    (status,) = [a.status for a in result.actions if isinstance(a, WriteStatus)]
    assert status.interfaces == (InterfaceStatus("default", "02:00:00:00:00:01"),)
    assert result.requeue_after == 7.0


def test_address_lands_in_status_once_and_polling_stops() -> None:
    before, poll = running(())
    assert before.interfaces == (InterfaceStatus("default", "02:00:00:00:00:01"),) and poll == 7.0
    lease = GuestAddress("02:00:00:00:00:01", ("192.168.122.50",))
    agent = GuestAddress("02:00:00:00:00:01", ("fd00::5", "192.168.122.50"))
    after, poll = running((lease, agent, GuestAddress("02:ff:00:00:00:09", ("10.9.9.9",))), before)
    assert after.interfaces == (InterfaceStatus("default", "02:00:00:00:00:01", ("192.168.122.50", "fd00::5")),)
    assert after.interfaces[0].ip_address == "192.168.122.50"
    assert poll is None, "every NIC has an address: the resync is enough"
    again, _ = running((lease, agent), after)
    assert again is after, "the same addresses write nothing"


def test_looks_for_a_missing_address_back_off_to_the_cap() -> None:
    waits = [running((), polls=polls)[1] for polls in range(8)]
    assert waits == [7.0, 14.0, 28.0, 56.0, 60.0, 60.0, 60.0, 60.0]
