"""One reconcile pass for one VMI: observe, ask the pure planner, carry out its actions.

The reconciler owns the shell-side memory the planner needs (stop progress, device
claims) and turns libvirt failures into a Synchronized=False status plus a retry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import structlog

from handler.agent.claims import DeviceClaims
from handler.agent.foreign_devices import ForeignDevices
from handler.agent.guest_networks import gate_networks, observe_addresses
from handler.agent.ports import (
    AddressProbe,
    DesiredSource,
    DeviceAllocator,
    DeviceInspector,
    GuestFilePreparer,
    Hypervisor,
    NetworkResolver,
    StatusSink,
)
from handler.core.actions import (
    Action,
    ClaimVMI,
    DefineDomain,
    DestroyDomain,
    ForgetVMI,
    RecordEvent,
    RequestShutdown,
    StartDomain,
    UndefineDomain,
    WriteStatus,
)
from handler.core.bdf import Bdf
from handler.core.desired import Desired, Intent, Observed, StopProgress
from handler.core.domain_state import ObservedDomain
from handler.core.planner import Plan, PlanSettings, plan
from handler.core.port_error import PortError
from handler.core.refusal import Refusal, Refused
from handler.core.status import VMIStatus
from handler.core.sync_failure import sync_failed
from handler.ops.metrics import Metrics

log = structlog.get_logger("qat_handler.reconciler")

WAITING_FOR_DEVICES = frozenset(("DeviceRejected", "NoFreeVF"))
"""Refusals that a VF coming free can lift."""
SHUTDOWN_OUTCOMES = {"Stopped": "guest_poweroff", "Destroyed": "destroyed"}
"""Event reasons that end a stop, and the outcome label they count under."""


@dataclass(frozen=True, slots=True)
class Outcome:
    requeue_after: float | None
    failed: bool = False


class Reconciler:
    def __init__(
        self,
        source: DesiredSource,
        hypervisor: Hypervisor,
        sink: StatusSink,
        settings: PlanSettings,
        inspector: DeviceInspector | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        allocator: DeviceAllocator | None = None,
        networks: NetworkResolver | None = None,
        addresses: AddressProbe | None = None,
        guest_files: GuestFilePreparer | None = None,
    ) -> None:
        self.source = source
        self.hypervisor = hypervisor
        self.sink = sink
        self.settings = settings
        self.inspector = inspector
        self.clock = clock
        self.metrics = metrics
        self.allocator = allocator
        self.networks = networks
        self.addresses = addresses
        self.guest_files = guest_files
        self.on_release: Callable[[str], None] = lambda _key: None
        """Called after a VMI's VFs are given back, so VMIs waiting for a VF can be retried."""
        self.claims = DeviceClaims()
        self.foreign = ForeignDevices(hypervisor, settings.render.owner)
        self._stops: dict[str, StopProgress] = {}
        self._memory_lock = threading.Lock()
        self._phases: dict[str, tuple[str, bool]] = {}
        self._waiting: set[str] = set()
        self._address_polls: dict[str, int] = {}
        """VMIs refused because a VF they need is held by another guest, or none is free."""
        """Last written phase per VMI and whether it is in sync: for STATUS= lines and metrics."""
        self.override: Callable[[Desired], Desired] | None = None
        """Set while the agent stops with the shutdown policy: turns every intent into HALT."""

    def owned_domains(self) -> list[ObservedDomain]:
        """The domains this agent instance manages (other agents' domains on the same libvirt excluded)."""
        owner = self.settings.render.owner
        return [d for d in self.hypervisor.list_managed() if d.identity is not None and d.identity.owned_by(owner)]

    def adopt(self, domains: list[ObservedDomain]) -> None:
        """Rebuild device claims from the metadata of domains that already exist."""
        for domain in domains:
            if domain.identity is not None:
                self.claims.claim(domain.identity.key, [d.bdf for d in domain.identity.devices])

    def reconcile(self, key: str) -> Outcome:
        started = time.perf_counter()
        try:
            return self._reconcile(key)
        finally:
            if self.metrics is not None:
                self.metrics.observe_reconcile(time.perf_counter() - started)

    def _reconcile(self, key: str) -> Outcome:
        desired = self.source.desired(key) or Desired(key, Intent.REMOVE, None)
        if self.override is not None:
            desired = self.override(desired)
        name = desired.domain_name
        bound = log.bind(vmi=key, domain=name, uid=desired.vmi.uid if desired.vmi else None)
        try:
            domain = self.hypervisor.observe(name)
            known = desired.devices or (domain.identity.devices if domain and domain.identity else ())
            if known:
                bound = bound.bind(bdfs=[str(device.bdf) for device in known])
            if desired.intent is Intent.RUN:
                self._set_stop(key, None)
            desired = gate_networks(self.networks, self._gate_devices(desired, domain), domain)
            self._note_waiting(key, desired)
            observed = Observed(
                domain,
                self.sink.last_status(key),
                self._get_stop(key),
                self.clock(),
                observe_addresses(self.addresses, desired, domain),
                self._address_polls.get(key, 0),
            )
            result: Plan = plan(desired, observed, self.settings)
            result = self._with_guest_files(desired, observed, result)
            uid = domain.identity.uid if domain is not None and domain.identity is not None else None
            self._execute(key, result.actions, bound, uid)
            self._count_address_poll(key, desired, result)
            forgotten = any(isinstance(action, ForgetVMI) for action in result.actions)
            if observed.status is not None and not forgotten:
                self._remember_adopted(key, observed.status)
        except PortError as error:
            bound.warning("sync failed", reason=error.reason, error=str(error))
            if self.metrics is not None:
                self.metrics.count_error(error.reason)
            try:
                self._execute(key, sync_failed(self.sink.last_status(key), name, error.reason, str(error)), bound)
            except PortError as also:
                bound.warning("could not report the failure", error=str(also))
            return Outcome(None, failed=True)
        return Outcome(result.requeue_after)

    def _with_guest_files(self, desired: Desired, observed: Observed, result: Plan) -> Plan:
        """Prepare the guest's files before a define or start; if they cannot be ready, plan
        again with the refusal, so it shows like any other and the VMI is looked at again."""
        if self.guest_files is None or desired.vmi is None:
            return result
        if not any(isinstance(action, (DefineDomain, StartDomain)) for action in result.actions):
            return result
        prepared = self.guest_files.prepare(desired.vmi)
        if prepared.refusal is None:
            return result
        if observed.domain is None:  # nothing uses what was made so far; it is made again when ready
            self.guest_files.remove(desired.vmi.uid)
        blocked = plan(replace(desired, blocked=prepared.refusal), observed, self.settings)
        return replace(blocked, requeue_after=prepared.retry_after)

    def _gate_devices(self, desired: Desired, domain: ObservedDomain | None) -> Desired:
        """Judge the devices of a guest about to be (re)started; a running guest is never re-judged."""
        if desired.intent is not Intent.RUN or desired.blocked is not None:
            return desired
        if desired.allocate:
            desired = self._allocated(desired)
        if desired.blocked is not None or not desired.devices:
            return desired
        if domain is not None and domain.active:
            return desired
        refusal = self._device_refusal(desired)
        return desired if refusal is None else replace(desired, blocked=refusal)

    def _allocated(self, desired: Desired) -> Desired:
        """Devices from the node's allocator, for a VMI that brought none."""
        assert desired.vmi is not None
        if self.allocator is None:
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
            devices = self.allocator.allocate(desired.vmi, taken_elsewhere)
        except Refused as refused:
            return replace(desired, blocked=refused.refusal)
        return replace(desired, devices=devices, allocate=False)

    def _device_refusal(self, desired: Desired) -> Refusal | None:
        for device in desired.devices:
            if self.inspector is not None:
                refusal = self.inspector.check(device.bdf, device.resource)
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

    def _execute(
        self,
        key: str,
        actions: tuple[Action, ...],
        bound: structlog.typing.FilteringBoundLogger,
        uid: str | None = None,
    ) -> None:
        for action in actions:
            self._apply(key, action, bound, uid)

    def _apply(
        self, key: str, action: Action, bound: structlog.typing.FilteringBoundLogger, uid: str | None = None
    ) -> None:
        match action:
            case ClaimVMI():
                self.sink.claim(key)
            case DefineDomain(name=name, xml=xml):
                self.hypervisor.define(xml)
                bound.debug("domain defined")
            case StartDomain(name=name):
                self.hypervisor.start(name)
                bound.info("domain started")
            case RequestShutdown(name=name, attempt=attempt):
                self.hypervisor.request_shutdown(name)
                now = self.clock()
                progress = self._get_stop(key)
                if progress is None or attempt == 1:
                    progress = StopProgress(started_at=now, last_request_at=now, requests=1)
                else:
                    progress = replace(progress, last_request_at=now, requests=attempt)
                self._set_stop(key, progress)
                bound.info("ACPI shutdown requested", attempt=attempt)
            case DestroyDomain(name=name, after_seconds=after):
                self.hypervisor.destroy(name)
                now = self.clock()
                progress = self._get_stop(key) or StopProgress(now, now, 0)
                self._set_stop(key, replace(progress, destroyed_after=after))
                bound.warning("domain destroyed", after_seconds=round(after, 1))
            case UndefineDomain(name=name):
                self.hypervisor.undefine(name)
                bound.info("domain undefined")
                if self.guest_files is not None and uid is not None:
                    self.guest_files.remove(uid)
                self._release(key)
            case WriteStatus(status=status):
                self.sink.write(key, status)
                synced = status.condition("Synchronized")
                with self._memory_lock:
                    self._phases[key] = (str(status.phase), synced is None or synced.status)
            case RecordEvent():
                self.sink.record_event(key, action)
                if self.metrics is not None and action.reason in SHUTDOWN_OUTCOMES:
                    self.metrics.count_shutdown(SHUTDOWN_OUTCOMES[action.reason])
                emit = bound.warning if action.warning else bound.info
                emit(action.message, reason=action.reason)
            case ForgetVMI():
                known = self.sink.last_status(key) is not None
                self.sink.forget(key)
                with self._memory_lock:
                    self._phases.pop(key, None)
                    self._waiting.discard(key)
                self._set_stop(key, None)
                # Said once: later passes over the same gone VMI (its own echo events) stay quiet.
                (bound.info if known else bound.debug)("VMI forgotten")
                self._release(key)

    def _count_address_poll(self, key: str, desired: Desired, result: Plan) -> None:
        polling = desired.intent is Intent.RUN and desired.vmi is not None and bool(desired.vmi.interfaces)
        with self._memory_lock:
            if polling and result.requeue_after is not None:
                self._address_polls[key] = self._address_polls.get(key, 0) + 1
            else:
                self._address_polls.pop(key, None)

    def _note_waiting(self, key: str, desired: Desired) -> None:
        waiting = desired.blocked is not None and desired.blocked.reason in WAITING_FOR_DEVICES
        with self._memory_lock:
            if waiting:
                self._waiting.add(key)
            else:
                self._waiting.discard(key)

    def waiting_for_devices(self) -> list[str]:
        with self._memory_lock:
            return sorted(self._waiting)

    def _release(self, key: str) -> None:
        held = self.claims.held_by(key)
        self.claims.release(key)
        if self.allocator is not None:
            self.allocator.release(key)
        if held:
            self.on_release(key)

    def _remember_adopted(self, key: str, status: VMIStatus) -> None:
        """Count a status this agent did not write itself (it was there when the agent started)."""
        synced = status.condition("Synchronized")
        with self._memory_lock:
            self._phases.setdefault(key, (str(status.phase), synced is None or synced.status))

    def summary(self) -> tuple[dict[str, int], int]:
        """VMIs per phase, and how many are out of sync (Synchronized=False)."""
        with self._memory_lock:
            values = list(self._phases.values())
        counts: dict[str, int] = {}
        for phase, _ in values:
            counts[phase] = counts.get(phase, 0) + 1
        return counts, sum(1 for _, ok in values if not ok)

    def _get_stop(self, key: str) -> StopProgress | None:
        with self._memory_lock:
            return self._stops.get(key)

    def _set_stop(self, key: str, progress: StopProgress | None) -> None:
        with self._memory_lock:
            if progress is None:
                self._stops.pop(key, None)
            else:
                self._stops[key] = progress
