"""The reconciler's networking steps: where a guest's NICs plug in (before it is defined or
started), and what addresses its NICs have (while it runs)."""

from __future__ import annotations

from dataclasses import replace

from handler.agent.ports import AddressProbe, NetworkResolver
from handler.core.desired import Desired, Intent
from handler.core.domain_state import ObservedDomain
from handler.core.interface_status import GuestAddress
from handler.core.refusal import Refused


def gate_networks(networks: NetworkResolver | None, desired: Desired, domain: ObservedDomain | None) -> Desired:
    """Resolve the attachments of a guest about to be defined or started; a refusal blocks it."""
    vmi = desired.vmi
    if networks is None or vmi is None or not vmi.interfaces or desired.intent is not Intent.RUN:
        return desired
    if desired.blocked is not None or (domain is not None and domain.active):
        return desired
    try:
        return replace(desired, attachments=networks.attachments(vmi))
    except Refused as refused:
        return replace(desired, blocked=refused.refusal)


def observe_addresses(
    probe: AddressProbe | None, desired: Desired, domain: ObservedDomain | None
) -> tuple[GuestAddress, ...]:
    """Asked only for a running guest that has NICs: the others cost no libvirt call."""
    if probe is None or desired.vmi is None or not desired.vmi.interfaces:
        return ()
    if domain is None or not domain.active:
        return ()
    return probe.interface_addresses(domain.name)
