"""The gate a guest's devices pass before it (re)starts: the allocator, the host checks,
domains the agent does not manage, and the claims that keep one VF out of two guests.

It also remembers which VMIs wait for a VF, and requeues them when one comes free.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

from handler.agent.claims import DeviceClaims
from handler.agent.foreign_devices import ForeignDevices
from handler.agent.ports import DeviceAllocator, DeviceInspector, Hypervisor
from handler.core.bdf import Bdf
from handler.core.desired import Desired, Intent
from handler.core.domain_state import ObservedDomain
from handler.core.refusal import Refusal, Refused

WAITING_FOR_DEVICES = frozenset(("DeviceRejected", "NoFreeVF"))
"""Refusals that a VF coming free can lift."""


class DeviceGate:
    def __init__(
        self,
        hypervisor: Hypervisor,
        owner: str,
        requeue: Callable[[str], None],
        inspector: DeviceInspector | None = None,
        allocator: DeviceAllocator | None = None,
    ) -> None:
        self.claims = DeviceClaims()
        self.foreign = ForeignDevices(hypervisor, owner)
        self._requeue = requeue
        self._inspector = inspector
        self._allocator = allocator
        self._lock = threading.Lock()
        self._waiting: set[str] = set()
        """VMIs refused because a VF they need is held by another guest, or none is free."""

    def adopt(self, domains: list[ObservedDomain]) -> None:
        """Rebuild the claims from the metadata of domains that already exist."""
        for domain in domains:
            if domain.identity is not None:
                self.claims.claim(domain.identity.key, [d.bdf for d in domain.identity.devices])

    def judge(self, desired: Desired, domain: ObservedDomain | None) -> Desired:
        """The devices of a guest about to be (re)started, judged; a running guest is never re-judged."""
        judged = self._judge(desired, domain)
        waiting = judged.blocked is not None and judged.blocked.reason in WAITING_FOR_DEVICES
        with self._lock:
            (self._waiting.add if waiting else self._waiting.discard)(desired.key)
        return judged

    def release(self, key: str) -> None:
        """The VMI's domain is gone: its VFs are free, and VMIs waiting for one get another look."""
        held = self.claims.held_by(key)
        self.claims.release(key)
        try:
            if self._allocator is not None:
                self._allocator.release(key)  # may fail to write its file; the VFs are free anyway
        finally:
            with self._lock:
                self._waiting.discard(key)
                waiting = sorted(self._waiting) if held else []
            for other in waiting:
                self._requeue(other)

    def waiting(self) -> list[str]:
        with self._lock:
            return sorted(self._waiting)

    def _judge(self, desired: Desired, domain: ObservedDomain | None) -> Desired:
        if desired.intent is not Intent.RUN or desired.blocked is not None:
            return desired
        if desired.allocate:
            desired = self._allocated(desired)
        if desired.blocked is not None or not desired.devices:
            return desired
        if domain is not None and domain.active:
            return desired
        refusal = self._refusal(desired)
        return desired if refusal is None else replace(desired, blocked=refusal)

    def _allocated(self, desired: Desired) -> Desired:
        """Devices from the node's allocator, for a VMI that brought none."""
        assert desired.vmi is not None
        if self._allocator is None:
            refusal = Refusal(
                "DevicesUnassigned",
                "device environment",
                f"is missing and the VMI asks for {len(desired.vmi.devices)} QAT device(s)",
                "set PCI_RESOURCE_<NAME> or QAT0..QATn (on bare metal: a <stem>.env file beside the manifest)",
            )
            return replace(desired, blocked=refusal)

        def taken_elsewhere(bdf: Bdf) -> bool:
            holder = self.claims.holder(bdf)
            return (holder is not None and holder != desired.key) or self.foreign.owner(bdf) is not None

        try:
            devices = self._allocator.allocate(desired.vmi, taken_elsewhere)
        except Refused as refused:
            return replace(desired, blocked=refused.refusal)
        return replace(desired, devices=devices, allocate=False)

    def _refusal(self, desired: Desired) -> Refusal | None:
        for device in desired.devices:
            if self._inspector is not None:
                refusal = self._inspector.check(device.bdf, device.resource)
                if refusal is not None:
                    return refusal
            foreign = self.foreign.owner(device.bdf)
            if foreign is not None:
                return Refusal(
                    "DeviceRejected",
                    str(device.bdf),
                    f"is already assigned to domain {foreign}, which qat-handler does not manage",
                    "give this VMI another VF, or remove the hostdev from that domain",
                )
        conflict = self.claims.claim(desired.key, [device.bdf for device in desired.devices])
        if conflict is not None:
            bdf, holder = conflict
            return Refusal(
                "DeviceRejected", str(bdf), f"is already assigned to VMI {holder}", "give every VMI its own VFs"
            )
        return None
